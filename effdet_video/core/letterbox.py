"""How a frame maps into the network input: the record that ops/letterbox.py computes, kept here without
torch or OpenCV so that the frame record (core/frames.py) can hold one without importing them."""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class Letterbox:
    """How one frame maps into the network input.

    scale:       s, network pixels per frame pixel (float32 value, AutoML's rule).
    resized_hw:  (height, width) of the frame's content in the network input, top-left.
    image_scale: 1 / s in float32: multiplies network-space boxes back to frame pixels.
    frame_hw:    (height, width) of the frame itself, which boxes scaled back are clipped to.
    """

    scale: float
    resized_hw: tuple[int, int]
    image_scale: float
    frame_hw: tuple[int, int]

    def clip_to_frame(self, rows: np.ndarray) -> np.ndarray:
        """Detections [n, 6] (x0, y0, x1, y1, score, class) in frame pixels -> a copy with the boxes
        clipped to the frame: AutoML clips in network space, where a box may reach into the padding beyond the
        frame's bottom or right edge (and scaled back, past the frame by up to the padding's size)."""
        height, width = self.frame_hw
        clipped = rows.copy()
        clipped[:, 0:4:2] = np.clip(rows[:, 0:4:2], 0, width)
        clipped[:, 1:4:2] = np.clip(rows[:, 1:4:2], 0, height)
        return clipped
