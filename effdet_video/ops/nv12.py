"""NV12 pictures (NVDEC's output, 8-bit 4:2:0 with interleaved chroma) to RGB and to the letterboxed
network input, in torch on whatever device holds the planes: frames NVDEC decoded into GPU memory are
prepared where they are, and only the small letterboxed input (not the full frame) ever moves.

The arithmetic follows the CPU path (stages/prepare.py: OpenCV's BT.601 limited-range conversion with
chroma repeated over each 2x2 block, then OpenCV's bilinear resize), except that RGB stays in float
until after the resize instead of being rounded to uint8 first: within about one grey level of it.

The network input is sampled straight from the planes (`letterbox_nv12`): a bilinear output pixel reads
four source pixels, so only those are converted to RGB, not the whole frame. That is torch's bilinear
resize (align_corners=False, no antialiasing) written out, because no library resizes from NV12 planes;
on a 1080p frame it touches a seventh of the pixels the full conversion does.
"""
from __future__ import annotations

import functools
from typing import Sequence

import torch

from effdet_video.core.letterbox import Letterbox
from effdet_video.ops.letterbox import letterbox_geometry

# OpenCV's fixed-point BT.601 coefficients (ITUR_BT_601_* in its colour code) divided by 2**20.
_LUMA = 1220542 / 2**20
_V_TO_RED = 1673527 / 2**20
_V_TO_GREEN = -852492 / 2**20
_U_TO_GREEN = -409993 / 2**20
_U_TO_BLUE = 2116026 / 2**20


def nv12_to_rgb(luma: torch.Tensor, chroma: torch.Tensor) -> torch.Tensor:
    """uint8 Y [..., H, W] and interleaved UV [..., ceil(H/2), ceil(W/2), 2] (any strides) -> float32 RGB
    [..., 3, H, W] in [0, 255], not rounded. Leading dimensions are frames of one size."""
    height, width = luma.shape[-2:]
    rows = torch.arange(height, device=luma.device) // 2
    cols = torch.arange(width, device=luma.device) // 2
    # each chroma sample over its 2x2 block: [..., H, W, 2]
    return _yuv_to_rgb(luma, chroma.index_select(-3, rows).index_select(-2, cols), dim=-3)


def _yuv_to_rgb(luma: torch.Tensor, chroma: torch.Tensor, dim: int) -> torch.Tensor:
    """uint8 Y [...] and the UV pairs over them [..., 2] -> float32 RGB in [0, 255] stacked at `dim`."""
    uv = chroma.float() - 128.0
    u, v = uv[..., 0], uv[..., 1]
    y = (luma.float() - 16.0).clamp_(min=0.0) * _LUMA
    rgb = torch.stack((y + _V_TO_RED * v, y + _V_TO_GREEN * v + _U_TO_GREEN * u, y + _U_TO_BLUE * u), dim=dim)
    return rgb.clamp_(0.0, 255.0)


def to_uint8_hwc(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB [..., 3, H, W] -> uint8 [..., H, W, 3], rounded."""
    return rgb.round().to(torch.uint8).movedim(-3, -1).contiguous()


def display_rgb(luma: torch.Tensor, chroma: torch.Tensor, rotation: int) -> torch.Tensor:
    """float32 RGB [..., 3, H, W] in display orientation (`rotation` degrees counter-clockwise, as
    stages/prepare.py's to_display_orientation)."""
    rgb = nv12_to_rgb(luma, chroma)
    return torch.rot90(rgb, k=rotation // 90, dims=(-2, -1)) if rotation else rgb


def letterbox_nv12(luma: torch.Tensor, chroma: torch.Tensor, rotation: int,
                   image_size: Sequence[int]) -> tuple[torch.Tensor, Letterbox]:
    """uint8 Y [N, H, W] and UV [N, ceil(H/2), ceil(W/2), 2] -> (uint8 [N, H_net, W_net, 3], the geometry):
    each frame in display orientation (`rotation` as display_rgb) bilinearly resized into the top-left
    corner, zero elsewhere, as ops/letterbox.py's letterbox_uint8 of display_rgb's frames would be."""
    count, height, width = luma.shape
    display_hw = (height, width) if rotation % 180 == 0 else (width, height)
    geometry = letterbox_geometry(display_hw, image_size)
    luma_at, chroma_at, row_weights, col_weights = _taps((height, width), display_hw, tuple(chroma.shape[1:3]),
                                                         rotation, geometry.resized_hw, luma.device)
    taps = _yuv_to_rgb(luma.reshape(count, -1)[:, luma_at], chroma.reshape(count, -1, 2)[:, chroma_at], dim=1)
    # taps: [N, 3, row tap, h, column tap, w]; summed in the order of torch's bilinear kernel
    rows = taps[..., 0, :] * col_weights[0] + taps[..., 1, :] * col_weights[1]
    resized = rows[:, :, 0] * row_weights[0] + rows[:, :, 1] * row_weights[1]
    out = torch.zeros((count, int(image_size[0]), int(image_size[1]), 3), dtype=torch.uint8, device=luma.device)
    resized_h, resized_w = geometry.resized_hw
    out[:, :resized_h, :resized_w] = to_uint8_hwc(resized.clamp_(0.0, 255.0))
    return out, geometry


def _linear_taps(size: int, resized: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """torch's bilinear source pixels and weights along one axis (align_corners=False): int64 [2, resized]
    and float32 [2, resized]."""
    scale = torch.tensor(float(size), dtype=torch.float32) / resized
    source = (scale * (torch.arange(resized, dtype=torch.float32) + 0.5) - 0.5).clamp_(min=0.0)
    first = source.long()
    second = first + (first < size - 1).long()
    weight = source - first
    return torch.stack((first, second)).to(device), torch.stack((1.0 - weight, weight)).to(device)


@functools.lru_cache(maxsize=8)  # a 1080p geometry holds about 10 MB of indices
def _taps(frame_hw: tuple[int, int], display_hw: tuple[int, int], chroma_hw: tuple[int, int], rotation: int,
          resized_hw: tuple[int, int], device: torch.device) -> tuple[torch.Tensor, ...]:
    """Where each resized pixel's four taps are in the flattened planes (luma [2, h, 2, w] and chroma the
    same, row tap first), and the row [2, h, 1] and column [2, w] weights."""
    height, width = frame_hw
    display_h, display_w = display_hw
    row_at, row_weights = _linear_taps(display_h, resized_hw[0], device)
    col_at, col_weights = _linear_taps(display_w, resized_hw[1], device)
    r, c = row_at[:, :, None, None], col_at[None, None, :, :]  # display coordinates of each tap
    # display (r, c) -> source (y, x) for torch.rot90(k = rotation / 90) over (H, W), as display_rgb turns
    y, x = {0: (r, c), 90: (c, width - 1 - r), 180: (height - 1 - r, width - 1 - c),
            270: (height - 1 - c, r)}[rotation % 360]
    y, x = torch.broadcast_tensors(y, x)
    return y * width + x, (y // 2) * chroma_hw[1] + x // 2, row_weights[:, :, None], col_weights
