"""What travels between the stages: one record per frame, filled in as it moves down the pipeline."""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from typing import Any

import numpy as np

from effdet_video.core.letterbox import Letterbox


@dataclasses.dataclass
class FrameRecord:
    """One video frame on its way through the pipeline.

    index:       0-based position in presentation order; the sinks restore this order.
    pts:         presentation timestamp in `time_base` units (copied to the output unchanged).
    duration:    frame duration in `time_base` units (0 when unknown).
    rotation:    display rotation in degrees counter-clockwise (PyAV's `VideoFrame.rotation`).
    picture:     the decoded frame (a PyAV VideoFrame) until the prepare stage converts it.
    canvas:      the decoded frame kept for sinks that draw on it in its own YUV layout (a PyAV
                 VideoFrame, or stages/canvas.py's GpuFrame for NVDEC's frames in GPU memory).
    image:       RGB uint8 [H, W, 3] in display orientation (rotation applied).
    net_image:   the letterboxed network input, uint8 [H_net, W_net, 3].
    letterbox:   how `image` maps into `net_image`.
    detections:  float32 [n, 6] (x0, y0, x1, y1, score, class_id) in `image` pixels, after filtering.
    track_ids:   with tracking, int64 [n] aligned with `detections`: each one's track id, -1 for none.
    trails:      with trails, per detection its track's recent centres, float64 [k, 2] (x, y) in `image`
                 pixels, oldest first (empty for an untracked detection).
    encoded:     what the annotate stage made for the sinks (e.g. a PyAV frame ready to encode).
    """

    index: int
    pts: int
    time_base: Fraction
    duration: int = 0
    rotation: int = 0
    picture: Any = None
    canvas: Any = None
    image: np.ndarray | None = None
    net_image: np.ndarray | None = None
    letterbox: Letterbox | None = None
    detections: np.ndarray | None = None
    track_ids: np.ndarray | None = None
    trails: list[np.ndarray] | None = None
    encoded: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return float(self.pts * self.time_base)
