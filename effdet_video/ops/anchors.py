"""EfficientDet anchor boxes, in AutoML's order and with its arithmetic.

The order must match the flattened head outputs (see `postprocess.flatten_levels`): level by level,
then feature rows, then columns, then the anchors of one location (octave-major, aspect-minor).
"""
from __future__ import annotations

import numpy as np
import torch

from effdet_video.configs import ModelConfig


def feature_sizes(image_size: tuple[int, int], max_level: int) -> list[tuple[int, int]]:
    """(height, width) of every level 0..max_level: each level halves the previous one, rounding up."""
    sizes = [tuple(image_size)]
    for _ in range(max_level):
        h, w = sizes[-1]
        sizes.append(((h - 1) // 2 + 1, (w - 1) // 2 + 1))
    return sizes


def _level_anchors(config: ModelConfig, image_size: tuple[int, int], feat_hw: tuple[int, int]) -> np.ndarray:
    """[feat_h * feat_w * num_anchors, 4] anchors of one level, float64."""
    stride_y = image_size[0] / feat_hw[0]  # a float: not 2**level when a level size was rounded up
    stride_x = image_size[1] / feat_hw[1]
    centre_y = (np.arange(feat_hw[0]) + 0.5) * stride_y
    centre_x = (np.arange(feat_hw[1]) + 0.5) * stride_x
    cy, cx = np.meshgrid(centre_y, centre_x, indexing="ij")  # [h, w]
    half_h, half_w = [], []
    for octave in range(config.num_scales):
        base = config.anchor_scale * 2 ** (octave / config.num_scales)
        for aspect in config.aspect_ratios:
            aspect_x = np.sqrt(aspect)
            half_w.append(base * stride_x * aspect_x / 2.0)
            half_h.append(base * stride_y / aspect_x / 2.0)
    half_h = np.asarray(half_h)  # [A]
    half_w = np.asarray(half_w)
    cy, cx = cy[..., None], cx[..., None]  # [h, w, 1] against [A]
    boxes = np.stack([cy - half_h, cx - half_w, cy + half_h, cx + half_w], axis=-1)  # [h, w, A, 4]
    return boxes.reshape(-1, 4)


def generate_anchors(config: ModelConfig, image_size: tuple[int, int] | None = None) -> torch.Tensor:
    """All anchors of `config` at `image_size` ((height, width), default the model's), float32 [N, 4]
    as [ymin, xmin, ymax, xmax] in network-input pixels. Computed in float64 like AutoML's numpy code."""
    size = tuple(image_size or config.image_size)
    feats = feature_sizes(size, config.max_level)
    levels = [_level_anchors(config, size, feats[level]) for level in config.levels]
    return torch.from_numpy(np.concatenate(levels).astype(np.float32))
