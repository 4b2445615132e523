"""The prepare stage: decoded picture -> RGB frame in display orientation -> letterboxed network input."""
from __future__ import annotations

from typing import Any, Sequence

import cv2
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


# 4:2:0 layouts OpenCV converts (BT.601 limited range, swscale's default matrix) in about half swscale's
# time at 1080p: it upsamples chroma by repetition, within about 1 grey level of swscale on average, which
# the 2x2 averaging of the encoder's conversion back (stages/video_sink.py) undoes up to RGB rounding.
_OPENCV_TO_RGB = {"yuv420p": cv2.COLOR_YUV2RGB_I420, "nv12": cv2.COLOR_YUV2RGB_NV12}


def picture_to_rgb(picture: Any) -> np.ndarray:
    """A decoded picture (PyAV VideoFrame) as RGB uint8 [H, W, 3]."""
    code = _OPENCV_TO_RGB.get(getattr(picture.format, "name", None))
    if code is not None and picture.width % 2 == 0 and picture.height % 2 == 0:
        return cv2.cvtColor(picture.to_ndarray(), code)
    return picture.to_ndarray(format="rgb24")


def prepare_frame(record: FrameRecord, image_size: Sequence[int]) -> None:
    """Fill `record.image` (RGB, display orientation), `record.net_image` and `record.letterbox`."""
    rgb = picture_to_rgb(record.picture)
    record.picture = None
    record.image = np.ascontiguousarray(to_display_orientation(rgb, record.rotation))
    record.net_image, record.letterbox = letterbox_uint8(record.image, image_size)
