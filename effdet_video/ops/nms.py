"""Static-shape non-maximum suppression (hard and Gaussian soft-NMS) with TF NonMaxSuppressionV5 semantics.

Why hand-written: the engine runs NMS inside one captured CUDA graph / torch.compile'd function, which
needs static shapes and no host synchronisation. torchvision's `nms` returns a data-dependent number of
indices (and syncs to size it) and has no soft-NMS; TF's kernel is a CPU heap. Here every tensor has a
fixed shape, there is no `.item()`, no boolean indexing, and the only loop has `max_det` iterations.

The algorithm: keep a working score per candidate (-inf once removed). `max_det` times: take the
argmax (first index on ties, i.e. the lower box index, as TF's heap order), emit it if its score is
> score_threshold, remove it, then against the chosen box either drop every candidate with IoU >
iou_threshold (hard) or multiply every score by exp(-iou^2 / sigma) and drop those now <= threshold
(Gaussian). Returned scores are the decayed ones.

Why this eager "argmax of fully-decayed scores" equals TF's lazy heap: TF keeps each candidate in a
max-heap under a possibly stale score and only applies the boxes selected since it was last examined
when it reaches the top; it selects it if that left its score unchanged, else pushes it back. Weights
are <= 1, so every heap key is an upper bound of that candidate's fully-decayed score. A popped
candidate whose score is unchanged therefore has a fully-decayed score >= every other key >= every other
fully-decayed score (equal keys resolve to the lower index in both) — it is exactly our argmax; one whose
score changed is re-queued under its exact score, which changes nothing. TF's early exit once a score
is <= threshold only skips candidates that can never be selected. The one difference is float rounding:
TF multiplies the weights in batches newest-first, we multiply them in selection order, so decayed scores
can differ by an ulp and the order of near-equal (1-ulp apart) soft-NMS scores may differ.

Class-aware NMS (`classes` given) zeroes the IoU between boxes of different classes: the same result as
per-class NMS then a merge by score, and as torchvision's trick of offsetting each class's coordinates,
but without the float32 precision lost to large offsets.

On CUDA the loop runs as one Triton kernel (`nms_triton`) with the same arithmetic; this torch
formulation is the CPU path and the reference it is tested against.
"""
from __future__ import annotations

import torch

from effdet_video.configs import NmsConfig
from effdet_video.ops.boxes import iou_from_planes, iou_planes


def _device_kernel(device: torch.device):
    """The one-launch Triton NMS (`nms_triton`) for CUDA tensors where Triton is installed, else None."""
    if device.type != "cuda":
        return None
    try:
        from effdet_video.ops.nms_triton import triton_nms
    except ImportError:
        return None
    return triton_nms


def non_max_suppression(
    boxes: torch.Tensor,
    scores: torch.Tensor,
    nms: NmsConfig,
    max_det: int,
    classes: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """NMS of each batch row: boxes [B, N, 4] (any corner layout whose pairs are (y, x) or (x, y)
    consistently), scores [B, N], optional classes [B, N] for class-aware NMS.

    `nms` gives the method and thresholds (AutoML's implicit defaults resolved here). Computes in
    float32 whatever the input dtype. Returns (indices int64 [B, max_det] into N, scores float32
    [B, max_det] (decayed for soft-NMS), num_valid int32 [B]); rows >= num_valid have index 0 and
    score 0."""
    nms = nms.resolved()
    soft = nms.method == "gaussian"
    # AutoML passes sigma / 2 to TF, whose weight is exp(-0.5 / soft_sigma * iou^2) = exp(-iou^2 / sigma).
    decay_scale = -0.5 / (nms.sigma / 2) if soft else 0.0
    threshold = nms.score_thresh
    planes = iou_planes(boxes.float())  # [5, B, N]
    scores = scores.float()
    device_kernel = _device_kernel(scores.device)
    if device_kernel is not None:
        return device_kernel(planes, scores, classes, max_det, threshold, nms.iou_thresh, decay_scale, soft)
    removed = torch.full_like(scores, float("-inf"))
    work = torch.where(scores > threshold, scores, removed)
    batch_size = scores.shape[0]
    best_indices, best_scores = [], []
    for _ in range(max_det):
        best_score, best = work.max(dim=1)
        best_indices.append(best)
        best_scores.append(best_score)
        best_planes = planes.gather(2, best.view(1, batch_size, 1).expand(5, batch_size, 1))
        iou = iou_from_planes(best_planes, planes)
        if classes is not None:
            same_class = classes == classes.gather(1, best.unsqueeze(1))
            iou = torch.where(same_class, iou, torch.zeros_like(iou))
        if soft:
            work = work * torch.exp(decay_scale * iou * iou)
            work = torch.where(work > threshold, work, removed)
        else:
            work = torch.where(iou > nms.iou_thresh, removed, work)
        work = work.scatter(1, best.unsqueeze(1), float("-inf"))
    # Once no candidate is left every later step is invalid too, so the valid rows are a prefix.
    best_scores = torch.stack(best_scores, dim=1)
    valid = best_scores > threshold
    indices = torch.where(valid, torch.stack(best_indices, dim=1), 0)
    kept_scores = torch.where(valid, best_scores, 0.0)
    return indices, kept_scores, valid.sum(dim=1, dtype=torch.int32)
