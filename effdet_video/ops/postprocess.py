"""From raw per-level head outputs to the engine's fixed [B, max_det, 6] detections (AutoML's
`postprocess_global` path: one class per anchor, class-agnostic NMS over all anchors).

Everything here has static shapes and no host synchronisation, so `detect` can run inside the
engine's captured graph.
"""
from __future__ import annotations

from typing import Sequence

import torch

from effdet_video.configs import NmsConfig
from effdet_video.ops.boxes import clip_boxes, decode_boxes, yxyx_to_xyxy
from effdet_video.ops.nms import non_max_suppression

DEFAULT_CANDIDATES = 4096


def flatten_levels(
    cls_outputs: Sequence[torch.Tensor], box_outputs: Sequence[torch.Tensor], num_classes: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-level NCHW head outputs [B, A*C, h, w] and [B, A*4, h, w] (channel = anchor * C + class)
    -> logits [B, N, C] and codes [B, N, 4] in AutoML's anchor order: level by level, row-major,
    anchor-minor (the order of `generate_anchors`)."""
    batch = cls_outputs[0].shape[0]
    logits = [level.permute(0, 2, 3, 1).reshape(batch, -1, num_classes) for level in cls_outputs]
    codes = [level.permute(0, 2, 3, 1).reshape(batch, -1, 4) for level in box_outputs]
    return torch.cat(logits, dim=1), torch.cat(codes, dim=1)


def score_anchors(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [B, N, C] -> (score float32 [B, N] = sigmoid of the best logit, its class int64 [B, N],
    0-based, the first on ties like TF's argmax). The max is exact in any dtype; the sigmoid is float32."""
    best_logit, best_class = logits.max(dim=-1)
    return torch.sigmoid(best_logit.float()), best_class


def score_levels(cls_outputs: Sequence[torch.Tensor], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`score_anchors(flatten_levels(...)[0])` without flattening the class axis: each level's best class
    is taken in the head's own NCHW layout ([B, A, C, h, w], the reduced axis outside the contiguous h*w),
    and only the [B, A, h, w] result is put in anchor order. Moving all N*C logits first cost a CPU
    runtime a transpose, a concatenation and a last-axis argmax over every logit."""
    best_logits, best_classes = [], []
    for level in cls_outputs:
        best, index = _by_class(level, num_classes).max(dim=2)
        best_logits.append(_in_anchor_order(best))
        best_classes.append(_in_anchor_order(index))
    return torch.sigmoid(torch.cat(best_logits, dim=1).float()), torch.cat(best_classes, dim=1)


def score_levels_without_classes(cls_outputs: Sequence[torch.Tensor], num_classes: int) -> torch.Tensor:
    """`score_levels`' scores alone: a max per anchor, no argmax over every logit (`candidate_classes`
    finds the class of the few anchors kept)."""
    best = [_in_anchor_order(_by_class(level, num_classes).amax(dim=2)) for level in cls_outputs]
    return torch.sigmoid(torch.cat(best, dim=1).float())


def candidate_classes(cls_outputs: Sequence[torch.Tensor], chosen: torch.Tensor, num_classes: int) -> torch.Tensor:
    """The best class (int64, 0-based, the first on ties) of the anchors `chosen` [B, K] only: their K*C
    logits gathered from the levels' flattened head outputs, then an argmax over those rows. On a CPU
    runtime the argmax over every anchor's logits was a tenth of the whole graph."""
    batch = chosen.shape[0]
    starts, steps = _class_positions(cls_outputs, num_classes)
    steps_by_class = steps[chosen].unsqueeze(-1) * torch.arange(num_classes, device=chosen.device)
    positions = (starts[chosen].unsqueeze(-1) + steps_by_class).reshape(batch, -1)
    logits = torch.cat([level.reshape(batch, -1) for level in cls_outputs], dim=1)
    return logits.gather(1, positions).view(batch, -1, num_classes).argmax(dim=-1)


def _class_positions(cls_outputs: Sequence[torch.Tensor], num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For every anchor in anchor order: where its class-0 logit sits in the concatenation of the levels'
    flattened [A*C, h, w] outputs, and the distance to its next class's (a level's h*w). Shapes only."""
    starts, steps, offset = [], [], 0
    for level in cls_outputs:
        channels, height, width = level.shape[1:]
        area = height * width
        per_location = channels // num_classes
        anchor = torch.arange(area * per_location, device=level.device)
        starts.append(offset + (anchor % per_location) * num_classes * area + anchor // per_location)
        steps.append(torch.full_like(anchor, area))
        offset += channels * area
    return torch.cat(starts), torch.cat(steps)


def _by_class(level: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[B, A*C, h, w] -> a [B, A, C, h, w] view."""
    batch, _, height, width = level.shape
    return level.view(batch, -1, num_classes, height, width)


def _in_anchor_order(per_anchor: torch.Tensor) -> torch.Tensor:
    """[B, A, h, w] -> [B, h*w*A] in anchor order (row-major, anchor-minor)."""
    return per_anchor.permute(0, 2, 3, 1).reshape(per_anchor.shape[0], -1)


def flatten_codes(box_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Per-level box outputs [B, A*4, h, w] -> codes [B, N, 4] in anchor order (as `flatten_levels`)."""
    batch = box_outputs[0].shape[0]
    return torch.cat([level.permute(0, 2, 3, 1).reshape(batch, -1, 4) for level in box_outputs], dim=1)


def pre_nms(
    cls_outputs: Sequence[torch.Tensor],
    box_outputs: Sequence[torch.Tensor],
    anchors: torch.Tensor,
    num_classes: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """AutoML's `pre_nms` over every anchor: (scores float32 [B, N], classes int64 [B, N] 0-based,
    boxes float32 [B, N, 4] [ymin, xmin, ymax, xmax] in network-input pixels)."""
    scores, classes = score_levels(cls_outputs, num_classes)
    return scores, classes, decode_boxes(flatten_codes(box_outputs).float(), anchors)


def _num_classes(cls_outputs: Sequence[torch.Tensor], num_anchors_total: int) -> int:
    """Classes per anchor, from the head's channel count (static: shapes only)."""
    locations = sum(level.shape[2] * level.shape[3] for level in cls_outputs)
    anchors_per_location = num_anchors_total // locations
    return cls_outputs[0].shape[1] // anchors_per_location


def _gather_rows(values: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """values [B, N, D], indices [B, K] -> [B, K, D]."""
    return values.gather(1, indices.unsqueeze(-1).expand(-1, -1, values.shape[-1]))


def select_candidates(
    cls_outputs: Sequence[torch.Tensor],
    box_outputs: Sequence[torch.Tensor],
    anchors: torch.Tensor,
    candidates: int = DEFAULT_CANDIDATES,
    kept_classes_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The NMS input: the `candidates` best-scoring anchors (all when candidates >= N), in anchor order so
    that NMS ties still go to the lower anchor index. Returns (scores float32 [B, K], classes int64 [B, K]
    0-based, boxes float32 [B, K, 4] yxyx network pixels). Only these K boxes are decoded.

    `kept_classes_only`: the best class of the K kept anchors only (`candidate_classes`), the same
    answer. It pays on a CPU runtime, where the argmax over every logit is a tenth of the graph; on a GPU
    the argmax comes with the max in one pass over the logits, and the gather would add two more."""
    num_classes = _num_classes(cls_outputs, anchors.shape[0])
    codes = flatten_codes(box_outputs)
    anchors = anchors.to(codes.device)
    if candidates >= anchors.shape[0]:
        scores, classes = score_levels(cls_outputs, num_classes)
        return scores, classes, decode_boxes(codes.float(), anchors)
    if kept_classes_only:
        scores = score_levels_without_classes(cls_outputs, num_classes)
        chosen = scores.topk(candidates, dim=1, sorted=False).indices.sort(dim=1).values
        classes = candidate_classes(cls_outputs, chosen, num_classes)
    else:
        scores, classes = score_levels(cls_outputs, num_classes)
        chosen = scores.topk(candidates, dim=1, sorted=False).indices.sort(dim=1).values
        classes = classes.gather(1, chosen)
    return scores.gather(1, chosen), classes, decode_boxes(_gather_rows(codes, chosen).float(), anchors[chosen])


def nms_detections(
    scores: torch.Tensor,
    classes: torch.Tensor,
    boxes: torch.Tensor,
    image_scales: torch.Tensor,
    image_size: tuple[int, int],
    nms: NmsConfig,
    max_det: int = 100,
    class_aware: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`select_candidates`' output -> `detect`'s output: NMS, clip to [0, image_size] in network space,
    scale by `image_scales` [B], (x0, y0, x1, y1, score, class_id 1-based) rows, zero padding rows."""
    keep, kept_scores, num_valid = non_max_suppression(
        boxes, scores, nms, max_det, classes=classes if class_aware else None
    )
    return kept_detections(classes, boxes, keep, kept_scores, num_valid, image_scales, image_size)


def kept_detections(
    classes: torch.Tensor,
    boxes: torch.Tensor,
    keep: torch.Tensor,
    kept_scores: torch.Tensor,
    num_valid: torch.Tensor,
    image_scales: torch.Tensor,
    image_size: tuple[int, int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """NMS's choice (`keep` [B, max_det] into the candidates, their scores, num_valid) -> `detect`'s output."""
    max_det = keep.shape[1]
    kept_boxes = clip_boxes(_gather_rows(boxes, keep), image_size)
    kept_boxes = yxyx_to_xyxy(kept_boxes * image_scales.float().view(-1, 1, 1))
    kept_classes = (classes.gather(1, keep) + 1).float()
    rows = torch.cat([kept_boxes, kept_scores.unsqueeze(-1), kept_classes.unsqueeze(-1)], dim=-1)
    in_use = torch.arange(max_det, device=rows.device) < num_valid.unsqueeze(1)
    return torch.where(in_use.unsqueeze(-1), rows, torch.zeros_like(rows)), num_valid


def detect(
    cls_outputs: Sequence[torch.Tensor],
    box_outputs: Sequence[torch.Tensor],
    anchors: torch.Tensor,
    image_scales: torch.Tensor,
    image_size: tuple[int, int],
    nms: NmsConfig,
    max_det: int = 100,
    candidates: int = DEFAULT_CANDIDATES,
    class_aware: bool = False,
    kept_classes_only: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Head outputs -> (detections float32 [B, max_det, 6] rows (x0, y0, x1, y1, score, class_id),
    num_valid int32 [B]), best first, boxes in original-frame pixels, class_id 1-based, rows >=
    num_valid all zero.

    `anchors` [N, 4] and `image_scales` [B] should be float32 whatever the head's precision: fp16
    anchor corners alone move boxes by pixels. The head outputs may be fp16 (computed in float32 here).

    As AutoML: per anchor its best class, NMS (`nms`), boxes clipped to [0, image_size] in network
    space (padding included), then multiplied by `image_scales`. `class_aware=False` is AutoML's
    global NMS; True suppresses only within a class.

    Only the `candidates` best-scoring anchors enter NMS. That is exact — the output equals NMS over
    all anchors — whenever the last kept score is above the best left-out score, or no left-out score
    passes the score threshold (`preselection_is_exact` checks it): selected scores never increase
    and a left-out anchor can only ever win with a score above them. Pass candidates >= N to disable.
    `kept_classes_only` as `select_candidates`.
    """
    scores, classes, boxes = select_candidates(cls_outputs, box_outputs, anchors, candidates, kept_classes_only)
    return nms_detections(scores, classes, boxes, image_scales, image_size, nms, max_det, class_aware)


def preselection_is_exact(
    anchor_scores: torch.Tensor, detections: torch.Tensor, num_valid: torch.Tensor, candidates: int, nms: NmsConfig
) -> torch.Tensor:
    """bool [B]: whether `detect`'s top-`candidates` pre-selection provably left its result unchanged,
    given every anchor's score [B, N] (`score_anchors`) and `detect`'s output."""
    if candidates >= anchor_scores.shape[1]:
        return torch.ones(anchor_scores.shape[0], dtype=torch.bool, device=anchor_scores.device)
    best_left_out = anchor_scores.float().topk(candidates + 1, dim=1).values[:, -1]
    max_det = detections.shape[1]
    full = num_valid == max_det
    return (best_left_out <= nms.resolved().score_thresh) | (full & (detections[:, -1, 4] > best_left_out))
