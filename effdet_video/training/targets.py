"""Training targets per anchor, as AutoML's `AnchorLabeler` makes them (tf2/anchors.py).

Matching (object_detection/argmax_matcher.py, thresholds 0.5/0.5, force_match_for_each_row): each anchor
takes the ground-truth box of highest IoU; IoU >= 0.5 is a positive, anything lower a negative (equal
thresholds leave no 'ignore' band); then every ground-truth box claims its own best anchor even below 0.5,
so no object goes unlearned (when two boxes claim one anchor, the first box wins, as TF's argmax).
Box targets: FasterRcnnBoxCoder without scale factors, the exact inverse of `ops.boxes.decode_boxes`;
zero for negatives, which is also how the box loss recognises them.
"""
from __future__ import annotations

import dataclasses

import torch

from effdet_video.ops.boxes import box_iou

MATCH_THRESHOLD = 0.5
EPSILON = 1e-8  # AutoML's guard against log(0) and division by zero in the box coder
BACKGROUND = -1  # cls target of an unmatched anchor (AutoML: class id - 1, background 0 - 1)


@dataclasses.dataclass
class AnchorTargets:
    cls_targets: torch.Tensor  # int64 [N]: 0-based class of positives, -1 for negatives
    box_targets: torch.Tensor  # float32 [N, 4]: (ty, tx, th, tw), zero for negatives
    num_positives: int


def match_anchors(gt_boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Index of the matched ground-truth box per anchor, -1 when unmatched. Boxes and anchors are yxyx."""
    matches = torch.full((anchors.shape[0],), -1, dtype=torch.long)
    if gt_boxes.shape[0] == 0:
        return matches
    iou = box_iou(gt_boxes, anchors)  # [G, N]
    best_iou, best_gt = iou.max(dim=0)
    matches = torch.where(best_iou >= MATCH_THRESHOLD, best_gt, matches)
    forced_anchor = iou.argmax(dim=1)  # [G]: each box's best anchor
    for gt_index in reversed(range(gt_boxes.shape[0])):  # reversed: the first box claiming an anchor wins
        matches[forced_anchor[gt_index]] = gt_index
    return matches


def encode_boxes(boxes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """yxyx boxes [N, 4] relative to anchors [N, 4] -> codes (ty, tx, th, tw); inverse of decode_boxes."""
    ha = (anchors[:, 2] - anchors[:, 0]).clamp(min=EPSILON)
    wa = (anchors[:, 3] - anchors[:, 1]).clamp(min=EPSILON)
    h = (boxes[:, 2] - boxes[:, 0]).clamp(min=EPSILON)
    w = (boxes[:, 3] - boxes[:, 1]).clamp(min=EPSILON)
    ty = ((boxes[:, 0] + boxes[:, 2]) / 2 - (anchors[:, 0] + anchors[:, 2]) / 2) / ha
    tx = ((boxes[:, 1] + boxes[:, 3]) / 2 - (anchors[:, 1] + anchors[:, 3]) / 2) / wa
    return torch.stack([ty, tx, torch.log(h / ha), torch.log(w / wa)], dim=1)


def label_anchors(gt_boxes: torch.Tensor, gt_classes: torch.Tensor, anchors: torch.Tensor) -> AnchorTargets:
    """Targets of one image. gt_boxes: float [G, 4] yxyx in network-input pixels; gt_classes: int [G],
    1-based; anchors: float [N, 4] yxyx (`ops.anchors.generate_anchors`)."""
    matches = match_anchors(gt_boxes, anchors)
    positive = matches >= 0
    cls_targets = torch.full_like(matches, BACKGROUND)
    cls_targets[positive] = gt_classes.long()[matches[positive]] - 1
    box_targets = torch.zeros_like(anchors)
    box_targets[positive] = encode_boxes(gt_boxes[matches[positive]], anchors[positive])
    return AnchorTargets(cls_targets, box_targets, int(positive.sum()))
