"""ops/nv12.py: the GPU prepare path's arithmetic, run here on the CPU, against the CPU prepare stage
(OpenCV) on real decoded frames. On a GPU, tests/test_nvdec.py runs the same path on NVDEC's frames."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effdet_video.core.frames import FrameRecord
from effdet_video.ops.letterbox import letterbox_geometry
from effdet_video.ops.nv12 import display_rgb, letterbox_nv12, nv12_to_rgb, to_uint8_hwc
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.prepare import prepare_frame

CLIP = "pan-720p30-h264-noaudio.mp4"


def plane_tensors(picture: av.VideoFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """An nv12 picture's Y [H, W] and UV [H/2, W/2, 2] planes as strided views, as DLPack gives them."""
    luma, chroma = picture.planes[:2]
    y = np.frombuffer(luma, np.uint8).reshape(luma.height, luma.line_size)[:, :luma.width]
    uv = np.frombuffer(chroma, np.uint8).reshape(chroma.height, chroma.line_size)[:, :2 * chroma.width]
    return torch.from_numpy(y.copy()), torch.from_numpy(uv.reshape(chroma.height, chroma.width, 2).copy())


@pytest.fixture(scope="module")
def nv12_frames(media: Path) -> list[av.VideoFrame]:
    source = VideoFileSource(media / CLIP)
    try:
        return [record.picture.reformat(format="nv12") for record, _ in zip(source.frames(), range(3))]
    finally:
        source.close()


def test_rgb_is_opencvs_conversion_up_to_rounding(nv12_frames: list[av.VideoFrame]) -> None:
    for picture in nv12_frames:
        ours = to_uint8_hwc(nv12_to_rgb(*plane_tensors(picture))).numpy().astype(np.int16)
        theirs = cv2.cvtColor(picture.to_ndarray(), cv2.COLOR_YUV2RGB_NV12)
        assert ours.shape == theirs.shape == (720, 1280, 3)
        difference = np.abs(ours - theirs)
        assert difference.max() <= 1 and difference.mean() < 0.1


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_letterbox_matches_the_cpu_prepare_stage(nv12_frames: list[av.VideoFrame], rotation: int) -> None:
    size = (512, 384)
    for index, picture in enumerate(nv12_frames):
        record = FrameRecord(index=0, pts=0, time_base=picture.time_base, rotation=rotation, picture=picture)
        prepare_frame(record, size)
        luma, chroma = plane_tensors(picture)
        ours, geometry = letterbox_nv12(luma[None], chroma[None], rotation, size)
        ours = ours[0]
        assert geometry == record.letterbox
        height, width = geometry.resized_hw
        assert (height, width) == ((216, 384) if rotation % 180 == 0 else (512, 288))
        content = ours.numpy()[:height, :width].astype(np.int16)
        difference = np.abs(content - record.net_image[:height, :width])
        assert difference.max() <= 2 and difference.mean() < 0.3, index  # uint8 rounding before the resize
        assert not ours.numpy()[height:].any() and not ours.numpy()[:, width:].any()


def test_odd_sizes_take_the_chroma_of_the_last_full_block() -> None:
    """An odd width or height has half a chroma block at the edge: it repeats the last sample."""
    luma = torch.full((5, 7), 120, dtype=torch.uint8)
    chroma = torch.tensor([[[128, 128], [128, 128], [128, 128], [90, 200]]] * 3, dtype=torch.uint8)
    rgb = nv12_to_rgb(luma, chroma)
    assert rgb.shape == (3, 5, 7)
    grey = (120 - 16) * 1220542 / 2**20
    assert torch.allclose(rgb[:, :, :6], torch.full((3, 5, 6), grey))
    assert rgb[0, 0, 6] > grey > rgb[2, 0, 6]  # V above and U below neutral: redder, less blue
    geometry = letterbox_geometry((5, 7), (14, 14))
    out, measured = letterbox_nv12(luma[None], chroma[None], 0, (14, 14))
    assert measured == geometry and out.shape == (1, 14, 14, 3) and out.dtype == torch.uint8


def whole_frame_letterbox(luma: torch.Tensor, chroma: torch.Tensor, rotation: int,
                          size: tuple[int, int]) -> np.ndarray:
    """The reference: every pixel converted (display_rgb), then torch's bilinear resize of the whole frame."""
    rgb = display_rgb(luma, chroma, rotation)
    height, width = letterbox_geometry(rgb.shape[-2:], size).resized_hw
    resized = F.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    return to_uint8_hwc(resized.clamp(0.0, 255.0)).numpy()


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize(("frame_hw", "size"), [((37, 53), (32, 32)), ((36, 64), (64, 48)), ((9, 5), (20, 20))])
def test_sampling_the_planes_equals_resizing_the_converted_frame(rotation: int, frame_hw: tuple[int, int],
                                                                 size: tuple[int, int]) -> None:
    """Only the taps converted, the same numbers: odd sizes (half chroma blocks at the edges), shrinking
    and enlarging, every rotation; three frames of a group at once."""
    generator = torch.Generator().manual_seed(rotation + frame_hw[0])
    height, width = frame_hw
    luma = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
    chroma = torch.randint(0, 256, (3, (height + 1) // 2, (width + 1) // 2, 2), dtype=torch.uint8,
                           generator=generator)
    ours, geometry = letterbox_nv12(luma, chroma, rotation, size)
    reference = whole_frame_letterbox(luma, chroma, rotation, size)
    resized_h, resized_w = geometry.resized_hw
    assert reference.shape == (3, resized_h, resized_w, 3)
    content = ours.numpy()[:, :resized_h, :resized_w]
    assert np.abs(content.astype(np.int16) - reference).max() <= 1  # float summation order only
    assert (content == reference).mean() > 0.999
    assert not ours.numpy()[:, resized_h:].any() and not ours.numpy()[:, :, resized_w:].any()

