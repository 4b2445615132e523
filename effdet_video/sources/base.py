"""A pipeline's start: the frame source (its end, the frame sink, is sinks/base.py). `run_pipeline` needs
nothing more, so files, live streams and folders differ only in the source and sinks they plug in."""
from __future__ import annotations

import abc
from typing import Iterator

from effdet_video.core.frames import FrameRecord


class FrameSource(abc.ABC):
    """Yields decoded frames with consecutive indices from 0, in presentation order."""

    skipped_packets: int = 0  # corrupt packets skipped while decoding
    dropped: int = 0          # frames left out on purpose (live sources that fall behind)
    expected_frames: int | None = None  # for the progress bar, when the container knows
    frames_on_gpu: bool = False  # pictures in GPU memory (NVDEC), prepared there in groups

    @abc.abstractmethod
    def frames(self) -> Iterator[FrameRecord]:
        """Runs on the decode thread; records carry `picture` (a PyAV VideoFrame)."""

    def close(self) -> None:
        """Release the input."""
