"""The prepare stage: decoded picture -> RGB frame in display orientation -> letterboxed network input.
A frame NVDEC left in GPU memory is letterboxed there (ops/nv12.py) and only the network input comes to
the host; its full-size RGB frame is downloaded only when a sink draws on RGB. Sinks that draw on the
decoded frame itself get it kept as `record.canvas` (for GPU frames, an nv12 copy NVDEC's surface no
longer holds). A 4:2:0 frame decoded on the host, for an engine on a GPU, has its planes copied there
and is letterboxed the same way: the host then spends a copy on it, not a full-frame conversion and
resize (its canvas stays on the host)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import cv2
import numpy as np

from effdet_video.core.frames import FrameRecord
from effdet_video.ops.letterbox import letterbox_uint8
from effdet_video.sources.hw_decode import gpu_planes, on_gpu
from effdet_video.stages.canvas import GpuFrame, GpuFrames

if TYPE_CHECKING:
    import torch


def to_display_orientation(image: np.ndarray, rotation: int) -> np.ndarray:
    """Apply a counter-clockwise display rotation (a multiple of 90) to a coded-orientation image: the
    model then sees people upright, and boxes are in the coordinates a viewer sees."""
    return np.rot90(image, k=rotation // 90) if rotation else image


def to_coded_orientation(image: np.ndarray, rotation: int) -> np.ndarray:
    """Undo `to_display_orientation`, so the encoder gets the input's coded size back."""
    return np.rot90(image, k=-(rotation // 90)) if rotation else image


# 4:2:0 layouts OpenCV converts (BT.601 limited range, swscale's default matrix) faster than swscale
# (docs/performance.md): it upsamples chroma by repetition, within about 1 grey level of swscale on
# average, which the 2x2 averaging of the encoder's conversion back (sinks/video_sink.py) undoes up to
# RGB rounding.
_OPENCV_TO_RGB = {"yuv420p": cv2.COLOR_YUV2RGB_I420, "nv12": cv2.COLOR_YUV2RGB_NV12}


def one_opencv_thread_per_worker() -> None:
    """OpenCV runs each call on a pool of its own, a thread per core that busy-waits between calls; under
    the prepare pool, which already works on several frames at once, that pool only takes cores from
    the video encoder. Process-wide: OpenCV has no per-call setting."""
    cv2.setNumThreads(1)


def picture_to_rgb(picture: Any) -> np.ndarray:
    """A decoded picture (PyAV VideoFrame) as RGB uint8 [H, W, 3]."""
    code = _OPENCV_TO_RGB.get(getattr(picture.format, "name", None))
    if code is not None and picture.width % 2 == 0 and picture.height % 2 == 0:
        return cv2.cvtColor(picture.to_ndarray(), code)
    return picture.to_ndarray(format="rgb24")


def prepare_frame(record: FrameRecord, image_size: Sequence[int], needs_image: bool = True,
                  needs_canvas: bool = False) -> None:
    """Fill `record.net_image` and `record.letterbox`; `record.image` (RGB, display orientation) for
    frames decoded on the host or where `needs_image`; `record.canvas` where `needs_canvas`."""
    if on_gpu(record.picture):
        _prepare_on_gpu([record], image_size, needs_image, needs_canvas)
        return
    rgb = picture_to_rgb(record.picture)
    record.canvas = record.picture if needs_canvas else None
    record.picture = None
    image = np.ascontiguousarray(to_display_orientation(rgb, record.rotation))
    record.net_image, record.letterbox = letterbox_uint8(image, image_size)
    record.image = image if needs_image else None


def letterboxed_on_device(picture: Any) -> bool:
    """Whether a host `picture` can be letterboxed from its planes on an engine's device: the 4:2:0
    layouts `picture_to_rgb` converts with OpenCV, whose arithmetic ops/nv12.py follows."""
    return picture.format.name in _OPENCV_TO_RGB and picture.width % 2 == 0 and picture.height % 2 == 0


def prepared_in_groups(picture: Any, needs_image: bool, letterbox_device: str | None) -> bool:
    """Whether `prepare_frames` prepares `picture` with others on a device (a few calls for the group)
    rather than alone on the host: frames in GPU memory, and with `letterbox_device` (the engine's GPU)
    host frames that `letterboxed_on_device` takes, unless `needs_image`: a full RGB frame on the host
    costs the host its conversion anyway, and the device a group of them."""
    return on_gpu(picture) or (letterbox_device is not None and not needs_image and letterboxed_on_device(picture))


def prepare_frames(records: Sequence[FrameRecord], image_size: Sequence[int], needs_image: bool = True,
                   needs_canvas: bool = False, letterbox_device: str | None = None) -> None:
    """`prepare_frame` for each record, but those `prepared_in_groups` takes, which are letterboxed
    together, a group per layout, size and rotation: a few torch calls for the group, not a few per frame
    (each call hands the GIL over, which many threads make slow) and one download."""
    on_device: dict[tuple[str, int, int, int], list[FrameRecord]] = {}
    on_host: dict[tuple[str, int, int, int], list[FrameRecord]] = {}
    for record in records:
        picture = record.picture
        key = (picture.format.name, picture.width, picture.height, record.rotation)
        if not prepared_in_groups(picture, needs_image, letterbox_device):
            prepare_frame(record, image_size, needs_image, needs_canvas)
        else:
            (on_device if on_gpu(picture) else on_host).setdefault(key, []).append(record)
    for group in on_device.values():
        _prepare_on_gpu(group, image_size, needs_image, needs_canvas)
    if letterbox_device:
        for group in on_host.values():
            _prepare_host_frames_on(letterbox_device, group, image_size, needs_image, needs_canvas)


def _prepare_on_gpu(records: Sequence[FrameRecord], image_size: Sequence[int], needs_image: bool,
                    needs_canvas: bool) -> None:
    """Frames of one size and rotation, in GPU memory: copied out of NVDEC's surfaces into one packed
    nv12 group (which is the canvas, where one is needed), then letterboxed together."""
    import torch

    planes = [gpu_planes(record.picture) for record in records]
    for record in records:
        record.picture = None  # the planes keep the frames alive until they are copied
    height, width = planes[0][0].shape
    with torch.inference_mode(), torch.cuda.stream(torch.cuda.default_stream(planes[0][0].device)):
        frames = GpuFrames.empty(len(records), height, width, planes[0][0].device)
        for luma, chroma, (y, uv) in zip(frames.luma, frames.chroma, planes):
            luma.copy_(y)
            chroma.copy_(uv)
        del planes
        _letterbox_group(records, frames, image_size, needs_image)
    for index, record in enumerate(records):
        record.canvas = GpuFrame(frames, index) if needs_canvas else None


def _prepare_host_frames_on(device: str, records: Sequence[FrameRecord], image_size: Sequence[int],
                            needs_image: bool, needs_canvas: bool) -> None:
    """Host frames of one layout, size and rotation: their planes copied into one nv12 group on `device`
    and letterboxed together there; each canvas stays the host picture."""
    import torch

    height, width = records[0].picture.height, records[0].picture.width
    with torch.inference_mode():
        frames = GpuFrames.empty(len(records), height, width, torch.device(device))
        rows, cols = frames.chroma.shape[1:3]
        for luma, chroma, record in zip(frames.luma, frames.chroma, records):
            planes = record.picture.planes
            luma.copy_(_plane_on(device, planes[0], height, width))
            if record.picture.format.name == "nv12":
                chroma.copy_(_plane_on(device, planes[1], rows, 2 * cols).unflatten(1, (cols, 2)))
            else:
                chroma[..., 0].copy_(_plane_on(device, planes[1], rows, cols))
                chroma[..., 1].copy_(_plane_on(device, planes[2], rows, cols))
            record.canvas = record.picture if needs_canvas else None
            record.picture = None
        _letterbox_group(records, frames, image_size, needs_image)


def _plane_on(device: str, plane: Any, rows: int, row_bytes: int) -> torch.Tensor:
    """A host picture plane's [rows, row_bytes] pixels on `device`: its rows copied whole, with the
    padding at their ends (one contiguous copy), which is then cut off there."""
    import torch

    data = np.frombuffer(plane, np.uint8)[: rows * plane.line_size].reshape(rows, plane.line_size)
    return torch.from_numpy(data).to(device)[:, :row_bytes]


def _letterbox_group(records: Sequence[FrameRecord], frames: GpuFrames, image_size: Sequence[int],
                     needs_image: bool) -> None:
    """Each record's network input and geometry from its frame of `frames` (one size and rotation), and
    its display-orientation RGB frame where `needs_image`; one download each."""
    from effdet_video.ops.nv12 import display_rgb, letterbox_nv12, to_uint8_hwc

    rotation = records[0].rotation
    net_images, geometry = letterbox_nv12(frames.luma, frames.chroma, rotation, image_size)
    net_images = net_images.cpu().numpy()
    images = (to_uint8_hwc(display_rgb(frames.luma, frames.chroma, rotation)).cpu().numpy() if needs_image
              else [None] * len(records))
    for record, net_image, image in zip(records, net_images, images):
        record.net_image, record.letterbox, record.image = net_image, geometry, image
