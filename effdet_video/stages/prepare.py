"""The prepare stage: decoded picture -> RGB frame in display orientation -> letterboxed network input."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from effdet_video.ops.letterbox import letterbox_uint8
from effdet_video.pipeline.frames import FrameRecord


def to_display_orientation(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (a multiple of 90) to a coded-orientation image: the
    model then sees people upright, and boxes are in the coordinates a viewer sees."""
    return np.rot90(image, k=rotation // 90) if rotation else image


def to_coded_orientation(image: np.ndarray, rotation: int) -> np.ndarray:
    """Undo `to_display_orientation`, so the encoder gets the input's coded size back."""
    return np.rot90(image, k=-(rotation // 90)) if rotation else image


def prepare_frame(record: FrameRecord, image_size: Sequence[int]) -> None:
    """Fill `record.image` (RGB, display orientation), `record.net_image` and `record.letterbox`."""
    rgb = record.picture.to_ndarray(format="rgb24")
    record.picture = None
    record.image = np.ascontiguousarray(to_display_orientation(rgb, record.rotation))
    record.net_image, record.letterbox = letterbox_uint8(record.image, image_size)
