"""NMS on the host for the CPU engines: `nms.non_max_suppression`'s algorithm and float32 arithmetic in
numpy, over only the candidates still alive.

Why hand-written beside the static-shape loop: that loop exists for captured graphs, where every step
must touch all K candidates and run `max_det` times. On a CPU nothing is captured, so here each step
works on the candidates still above the score floor (removed ones are dropped from the arrays, not
masked), and the loop ends as soon as none is left; numpy's per-operation cost on a few thousand floats
is also a fraction of torch's. No library offers this: torchvision's `nms` is hard NMS only (no
Gaussian soft-NMS, AutoML's default) and sorts by the original scores.

Same results as the static loop: the argmax takes the first of equal scores and the arrays keep the
candidates' order, so ties go to the lower index; IoU and the decay use the same float32 operations in
the same order (`boxes.iou_from_planes`), the exponential torch's own.
"""
from __future__ import annotations

import numpy as np
import torch

from effdet_video.configs import NmsConfig


def _iou_planes(boxes: np.ndarray) -> list[np.ndarray]:
    """yxyx boxes [N, 4] float32 -> five contiguous planes [N]: ymin, xmin, ymax, xmax (pairs ordered) and
    area."""
    coords = np.ascontiguousarray(boxes.T)
    lo = np.minimum(coords[:2], coords[2:])
    hi = np.maximum(coords[:2], coords[2:])
    return [lo[0], lo[1], hi[0], hi[1], (hi[0] - lo[0]) * (hi[1] - lo[1])]


def _iou_with(best: int, planes: list[np.ndarray]) -> np.ndarray:
    """IoU of box `best` with every box of `planes`, as `boxes.iou_from_planes` (call under
    np.errstate: an empty pair divides 0 by 0, and is then set to 0)."""
    ymin, xmin, ymax, xmax, area = planes
    inter_h = np.minimum(ymax[best], ymax) - np.maximum(ymin[best], ymin)
    np.maximum(inter_h, np.float32(0), out=inter_h)
    inter_w = np.minimum(xmax[best], xmax) - np.maximum(xmin[best], xmin)
    np.maximum(inter_w, np.float32(0), out=inter_w)
    inter = np.multiply(inter_h, inter_w, out=inter_h)
    iou = inter / (area[best] + area - inter)
    if not area[best] > 0:  # as written, so that a NaN area counts as empty, as in iou_from_planes
        return np.zeros_like(iou)
    iou[~(area > 0)] = 0
    return iou


def _suppress_row(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray | None, nms: NmsConfig,
                  max_det: int) -> tuple[list[int], list[float]]:
    soft = nms.method == "gaussian"
    decay_scale = np.float32(-0.5 / (nms.sigma / 2)) if soft else np.float32(0)
    threshold = np.float32(nms.score_thresh)
    removed = np.float32(-np.inf)
    alive = np.flatnonzero(scores > threshold)
    work = scores[alive]
    planes = [plane[alive] for plane in _iou_planes(boxes)]
    kept_classes = classes[alive] if classes is not None else None
    chosen, chosen_scores = [], []
    live = alive.size
    # A removed candidate stays in the arrays, at or below the floor (hard NMS marks it -inf), which every
    # later step keeps it; the arrays are compacted once half of them is dead, so a step costs about the
    # live candidates' count.
    while live and len(chosen) < max_det:
        best = int(np.argmax(work))
        chosen.append(int(alive[best]))
        chosen_scores.append(float(work[best]))
        iou = _iou_with(best, planes)
        if kept_classes is not None:
            iou[kept_classes != kept_classes[best]] = 0
        if soft:
            # torch's exp, not numpy's: the two differ in the last bit, enough to swap two near-equal
            # soft-NMS scores against the static loop's order.
            work *= torch.exp(torch.from_numpy(decay_scale * iou * iou)).numpy()
        else:
            work[iou > np.float32(nms.iou_thresh)] = removed
        work[best] = removed
        in_play = work > threshold
        live = int(np.count_nonzero(in_play))
        if 2 * live < work.size:
            index = np.flatnonzero(in_play)
            alive, work, planes = alive[index], work[index], [plane[index] for plane in planes]
            if kept_classes is not None:
                kept_classes = kept_classes[index]
    return chosen, chosen_scores


def host_non_max_suppression(boxes: np.ndarray, scores: np.ndarray, nms: NmsConfig, max_det: int,
                             classes: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`nms.non_max_suppression` on numpy arrays: boxes [B, N, 4], scores [B, N], optional classes [B, N]
    (class-aware). Returns (indices int64 [B, max_det], scores float32 [B, max_det], num_valid int32 [B]),
    rows >= num_valid index 0 and score 0."""
    nms = nms.resolved()
    batch = scores.shape[0]
    indices = np.zeros((batch, max_det), np.int64)
    kept_scores = np.zeros((batch, max_det), np.float32)
    num_valid = np.zeros(batch, np.int32)
    for row in range(batch):
        with np.errstate(divide="ignore", invalid="ignore"):
            chosen, chosen_scores = _suppress_row(boxes[row].astype(np.float32, copy=False),
                                                  scores[row].astype(np.float32, copy=False),
                                                  None if classes is None else classes[row], nms, max_det)
        indices[row, :len(chosen)] = chosen
        kept_scores[row, :len(chosen)] = chosen_scores
        num_valid[row] = len(chosen)
    return indices, kept_scores, num_valid
