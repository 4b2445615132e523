"""A pipeline's end: the frame sink (its start, the frame source, is sources/base.py)."""
from __future__ import annotations

import abc
from typing import Sequence

from effdet_video.core.frames import FrameRecord


class FrameSink(abc.ABC):
    """Consumes finished frames in index order. Writes to a temporary name; `finish` publishes it,
    `abort` removes it, so a failed or interrupted run never leaves a partial file."""

    needs_image: bool = False  # whether `render` needs the annotated RGB frame (`record.image`)
    needs_canvas: bool = False  # whether `render` needs the decoded frame itself (`record.canvas`)

    def render_group(self, records: Sequence[FrameRecord]) -> None:
        """Work on several frames at once before each one's `render` (frames in GPU memory come in
        groups, and are cheaper to draw on together)."""

    def render(self, record: FrameRecord) -> None:
        """Per-frame work that may run in parallel and out of order (annotate pool), e.g. drawing and
        pixel format conversion; results go into `record.encoded`."""

    @abc.abstractmethod
    def write(self, record: FrameRecord) -> None:
        """Called on the sink thread, one frame at a time, in index order."""

    @abc.abstractmethod
    def finish(self) -> None:
        """Flush and publish the output under its final name."""

    def warnings(self) -> list[str]:
        """What the output could not keep of the input (one line each), once finished."""
        return []

    @abc.abstractmethod
    def abort(self) -> None:
        """Drop the output; must be safe to call at any time and more than once."""
