"""AutoML's detection loss (tf2/train_lib.py `_detection_loss`, FocalLoss, BoxLoss), in PyTorch.

Both terms are sums over anchors divided by the batch's positives + 1; the box term's Huber is summed over
the four coordinates and divided by 4 * that normaliser, and only anchors with a non-zero target count.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from effdet_video.ops.postprocess import flatten_levels

FOCAL_ALPHA = 0.25
FOCAL_GAMMA = 1.5
HUBER_DELTA = 0.1
BOX_LOSS_WEIGHT = 50.0


@dataclasses.dataclass
class DetectionLoss:
    total: torch.Tensor
    cls: torch.Tensor
    box: torch.Tensor


def focal_loss(logits: torch.Tensor, targets_one_hot: torch.Tensor, normalizer: torch.Tensor) -> torch.Tensor:
    """Sigmoid focal loss summed over every element, / normalizer."""
    prob = torch.sigmoid(logits)
    p_t = targets_one_hot * prob + (1 - targets_one_hot) * (1 - prob)
    alpha = targets_one_hot * FOCAL_ALPHA + (1 - targets_one_hot) * (1 - FOCAL_ALPHA)
    ce = F.binary_cross_entropy_with_logits(logits, targets_one_hot, reduction="none")
    return (alpha * (1 - p_t) ** FOCAL_GAMMA * ce).sum() / normalizer


def box_loss(codes: torch.Tensor, targets: torch.Tensor, normalizer: torch.Tensor) -> torch.Tensor:
    """Huber (delta 0.1) on the coordinates whose target is non-zero, / (4 * normalizer)."""
    mask = (targets != 0).to(codes.dtype)
    huber = F.huber_loss(codes, targets, reduction="none", delta=HUBER_DELTA)
    return (huber * mask).sum() / (4 * normalizer)


def detection_loss(cls_outputs: list[torch.Tensor], box_outputs: list[torch.Tensor], cls_targets: torch.Tensor,
                   box_targets: torch.Tensor, num_classes: int) -> DetectionLoss:
    """cls_targets: int [B, N] (0-based class, -1 background); box_targets: float [B, N, 4], both in
    anchor order (the order `flatten_levels` puts the head outputs in)."""
    logits, codes = flatten_levels(cls_outputs, box_outputs, num_classes)
    logits, codes = logits.float(), codes.float()
    normalizer = (cls_targets >= 0).sum().float() + 1.0
    one_hot = F.one_hot(cls_targets.clamp(min=0), num_classes).float() * (cls_targets >= 0).unsqueeze(-1)
    cls = focal_loss(logits, one_hot, normalizer)
    box = box_loss(codes, box_targets, normalizer)
    return DetectionLoss(cls + BOX_LOSS_WEIGHT * box, cls, box)
