"""Resizing a frame into the network input the way AutoML does (scale to fit, content top-left, pad
bottom/right), in two flavours:

- `preprocess_exact`: AutoML's inference pre-processing, to 5e-7 (float32 normalise, bilinear resize
  with half-pixel centres and no antialiasing, zero padding). The parity reference.
- `letterbox_uint8` + `normalize_and_mask`: what the video pipeline does. The prepare pool resizes the
  uint8 frame with OpenCV (several times faster, and 4x less data to move to the device); the engine
  normalises on the device and zeroes the padding, which is exactly AutoML's padding in normalised space.
  The difference to `preprocess_exact` over the valid region comes from the uint8 rounding and OpenCV's
  fixed-point weights, under a grey level; tests/test_ops_automl.py bounds it (max < 0.02, mean < 0.006 in
  normalised units; docs/performance.md has the measured values).
  Outside the valid region both are exactly 0.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from effdet_video.configs import ModelConfig
from effdet_video.core.letterbox import Letterbox


def letterbox_geometry(raw_hw: Sequence[int], image_size: Sequence[int]) -> Letterbox:
    """AutoML's `set_scale_factors_to_output_size` in float32: s = min(H_out / H, W_out / W), sizes
    truncated. Unlike AutoML, a side is never resized to 0 (a 1 px minimum, for extreme aspect ratios)."""
    raw_h, raw_w = (np.float32(v) for v in raw_hw)
    if raw_h <= 0 or raw_w <= 0:
        raise ValueError(f"cannot letterbox an empty frame of size {tuple(raw_hw)}")
    scale = min(np.float32(image_size[0]) / raw_h, np.float32(image_size[1]) / raw_w)
    resized_hw = (max(1, int(raw_h * scale)), max(1, int(raw_w * scale)))
    return Letterbox(scale=float(scale), resized_hw=resized_hw, image_scale=float(np.float32(1.0) / scale),
                     frame_hw=(int(raw_hw[0]), int(raw_hw[1])))


def _normalize(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """(x - mean) / std per channel of float32 [..., 3, H, W], in float32 like AutoML. Python scalars,
    not a constant tensor, so that nothing is copied host-to-device inside a captured graph."""
    return torch.stack([(images[..., c, :, :] - mean[c]) / std[c] for c in range(3)], dim=-3)


def preprocess_exact(image: np.ndarray, config: ModelConfig, image_size: Sequence[int] | None = None) -> torch.Tensor:
    """AutoML's inference pre-processing of one uint8 RGB frame [H, W, 3] -> float32 [3, H_net, W_net]:
    normalise, bilinear resize (torch's align_corners=False, antialias=False is tf.image.resize's
    half-pixel bilinear), zero padding at the bottom/right."""
    size = tuple(image_size or config.image_size)
    geometry = letterbox_geometry(image.shape[:2], size)
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    normalized = _normalize(chw, config.mean_rgb, config.stddev_rgb)
    resized = F.interpolate(
        normalized.unsqueeze(0), size=geometry.resized_hw, mode="bilinear", align_corners=False, antialias=False
    )[0]
    out = torch.zeros((3, *size), dtype=torch.float32)
    out[:, : geometry.resized_hw[0], : geometry.resized_hw[1]] = resized
    return out


def letterbox_uint8(
    image: np.ndarray, image_size: Sequence[int], out: np.ndarray | None = None
) -> tuple[np.ndarray, Letterbox]:
    """Resize a uint8 [H, W, 3] frame with OpenCV's bilinear filter into the top-left of `out` (uint8
    [H_net, W_net, 3], allocated when None, e.g. a slot of a pinned host batch). The padding is left as
    it is: `normalize_and_mask` ignores it. Returns (out, geometry)."""
    geometry = letterbox_geometry(image.shape[:2], image_size)
    shape = (int(image_size[0]), int(image_size[1]), 3)
    if out is None:
        out = np.zeros(shape, dtype=np.uint8)
    elif out.shape != shape or out.dtype != np.uint8:
        raise ValueError(f"letterbox buffer is {out.dtype} {out.shape}, expected uint8 {shape}")
    height, width = geometry.resized_hw
    content = out[:height, :width]
    resized = cv2.resize(image, (width, height), dst=content, interpolation=cv2.INTER_LINEAR)
    if not np.shares_memory(resized, content):  # OpenCV allocates anew when it cannot write into dst
        content[...] = resized
    return out, geometry


def normalize_and_mask(
    images: torch.Tensor,
    valid_hw: torch.Tensor,
    mean: Sequence[float],
    std: Sequence[float],
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """uint8 [B, H, W, 3] letterboxed frames -> normalised `dtype` [B, 3, H, W], zero outside each
    frame's valid (height, width) region from `valid_hw` int [B, 2]. Static shapes and no host sync
    (the mask comes from arange comparisons), so it can live inside a captured graph."""
    height, width = images.shape[1:3]
    normalized = _normalize(images.permute(0, 3, 1, 2).float(), mean, std)
    rows = torch.arange(height, device=images.device) < valid_hw[:, 0:1]  # [B, H]
    cols = torch.arange(width, device=images.device) < valid_hw[:, 1:2]  # [B, W]
    inside = (rows.unsqueeze(2) & cols.unsqueeze(1)).unsqueeze(1)  # [B, 1, H, W]
    return torch.where(inside, normalized, torch.zeros_like(normalized)).to(dtype)
