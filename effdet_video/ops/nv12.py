"""NV12 pictures (NVDEC's output, 8-bit 4:2:0 with interleaved chroma) to RGB and to the letterboxed
network input, in torch on whatever device holds the planes: frames NVDEC decoded into GPU memory are
prepared where they are, and only the small letterboxed input (not the full frame) ever moves.

The arithmetic follows the CPU path (stages/prepare.py: OpenCV's BT.601 limited-range conversion with
chroma repeated over each 2x2 block, then OpenCV's bilinear resize), except that RGB stays in float
until after the resize instead of being rounded to uint8 first: within about one grey level of it.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

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
    uv = chroma.index_select(-3, rows).index_select(-2, cols).float() - 128.0
    u, v = uv[..., 0], uv[..., 1]
    y = (luma.float() - 16.0).clamp_(min=0.0) * _LUMA
    rgb = torch.stack((y + _V_TO_RED * v, y + _V_TO_GREEN * v + _U_TO_GREEN * u, y + _U_TO_BLUE * u), dim=-3)
    return rgb.clamp_(0.0, 255.0)


def to_uint8_hwc(rgb: torch.Tensor) -> torch.Tensor:
    """float RGB [..., 3, H, W] -> uint8 [..., H, W, 3], rounded."""
    return rgb.round().to(torch.uint8).movedim(-3, -1).contiguous()


def display_rgb(luma: torch.Tensor, chroma: torch.Tensor, rotation: int) -> torch.Tensor:
    """float32 RGB [..., 3, H, W] in display orientation (`rotation` degrees counter-clockwise, as
    stages/prepare.py's to_display_orientation)."""
    rgb = nv12_to_rgb(luma, chroma)
    return torch.rot90(rgb, k=rotation // 90, dims=(-2, -1)) if rotation else rgb


def letterbox_rgb(rgb: torch.Tensor, image_size: Sequence[int]) -> tuple[torch.Tensor, Letterbox]:
    """float RGB [..., 3, H, W] -> (uint8 [..., H_net, W_net, 3] with each frame resized into its top-left
    corner, zero elsewhere, and the geometry): ops/letterbox.py's letterbox_uint8 on the frames' device."""
    geometry = letterbox_geometry(rgb.shape[-2:], image_size)
    height, width = geometry.resized_hw
    frames = rgb.reshape(-1, *rgb.shape[-3:])
    resized = F.interpolate(frames, size=(height, width), mode="bilinear", align_corners=False, antialias=False)
    out = torch.zeros((len(frames), int(image_size[0]), int(image_size[1]), 3), dtype=torch.uint8,
                      device=rgb.device)
    out[:, :height, :width] = to_uint8_hwc(resized.clamp_(0.0, 255.0))
    return out.reshape(*rgb.shape[:-3], *out.shape[1:]), geometry
