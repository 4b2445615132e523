"""The device NMS as one Triton kernel: the same algorithm and float32 arithmetic as `nms.non_max_suppression`.

Why hand-written: the torch formulation costs ~10 small kernels per selected box, so max_det = 100
selections are about a thousand launches, more time in a CUDA graph than the network itself even at
batch 1 (docs/performance.md has the figure).
No library has a static-shape, graph-capturable (soft-)NMS. Here one program per image holds its
candidates' working scores in registers and runs all `max_det` selections in a single launch.

Exactness: IoU uses the same operation order as `boxes.iou_from_planes`, with IEEE division
(`div_rn`, Triton's `/` is approximate) and libdevice's `exp` (CUDA's `expf`, as torch uses), so
selections equal the torch formulation; `tests/test_ops_nms.py` checks it.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice


@triton.jit
def _nms_kernel(planes_ptr, scores_ptr, classes_ptr, out_index_ptr, out_score_ptr, out_count_ptr,
                plane_stride, count, threshold, iou_threshold, decay_scale,
                MAX_DET: tl.constexpr, BLOCK: tl.constexpr, SOFT: tl.constexpr, CLASS_AWARE: tl.constexpr):
    row = tl.program_id(0)
    offsets = tl.arange(0, BLOCK)
    in_range = offsets < count
    base = planes_ptr + row * count
    ymin = tl.load(base + offsets, mask=in_range, other=0.0)
    xmin = tl.load(base + plane_stride + offsets, mask=in_range, other=0.0)
    ymax = tl.load(base + 2 * plane_stride + offsets, mask=in_range, other=0.0)
    xmax = tl.load(base + 3 * plane_stride + offsets, mask=in_range, other=0.0)
    area = tl.load(base + 4 * plane_stride + offsets, mask=in_range, other=0.0)
    scores = tl.load(scores_ptr + row * count + offsets, mask=in_range, other=float("-inf"))
    work = tl.where(scores > threshold, scores, float("-inf"))
    if CLASS_AWARE:
        classes = tl.load(classes_ptr + row * count + offsets, mask=in_range, other=-1)
    kept = tl.full((), 0, tl.int32)
    for step in range(MAX_DET):
        best_score, best = tl.max(work, 0, return_indices=True, return_indices_tie_break_left=True)
        is_valid = best_score > threshold
        tl.store(out_index_ptr + row * MAX_DET + step, tl.where(is_valid, best, 0).to(tl.int64))
        tl.store(out_score_ptr + row * MAX_DET + step, tl.where(is_valid, best_score, 0.0))
        kept += is_valid.to(tl.int32)
        best_ymin = tl.load(base + best)
        best_xmin = tl.load(base + plane_stride + best)
        best_ymax = tl.load(base + 2 * plane_stride + best)
        best_xmax = tl.load(base + 3 * plane_stride + best)
        best_area = tl.load(base + 4 * plane_stride + best)
        inter_h = tl.maximum(tl.minimum(best_ymax, ymax) - tl.maximum(best_ymin, ymin), 0.0)
        inter_w = tl.maximum(tl.minimum(best_xmax, xmax) - tl.maximum(best_xmin, xmin), 0.0)
        inter = inter_h * inter_w
        iou = tl.div_rn(inter, best_area + area - inter)
        iou = tl.where(area > 0, iou, 0.0)
        iou = tl.where(best_area > 0, iou, 0.0)
        if CLASS_AWARE:
            iou = tl.where(classes == tl.load(classes_ptr + row * count + best), iou, 0.0)
        if SOFT:
            work = work * libdevice.exp(decay_scale * iou * iou)
            work = tl.where(work > threshold, work, float("-inf"))
        else:
            work = tl.where(iou > iou_threshold, float("-inf"), work)
        work = tl.where(offsets == best, float("-inf"), work)
    tl.store(out_count_ptr + row, kept)


def triton_nms(planes: torch.Tensor, scores: torch.Tensor, classes: torch.Tensor | None, max_det: int,
               threshold: float, iou_threshold: float, decay_scale: float, soft: bool,
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`nms.non_max_suppression`'s core on CUDA: planes float32 [5, B, N] (`iou_planes`), scores float32
    [B, N], optional classes [B, N] -> (indices int64 [B, max_det], scores [B, max_det], num_valid int32 [B])."""
    batch, count = scores.shape
    planes, scores = planes.contiguous(), scores.contiguous()
    indices = torch.empty((batch, max_det), dtype=torch.int64, device=scores.device)
    kept_scores = torch.empty((batch, max_det), dtype=torch.float32, device=scores.device)
    num_valid = torch.empty((batch,), dtype=torch.int32, device=scores.device)
    class_ids = classes.to(torch.int32).contiguous() if classes is not None else scores
    block = triton.next_power_of_2(count)
    with torch.cuda.device(scores.device):  # Triton launches on the current device's current stream
        _nms_kernel[(batch,)](planes, scores, class_ids, indices, kept_scores, num_valid,
                              batch * count, count, threshold, iou_threshold, decay_scale,
                              MAX_DET=max_det, BLOCK=block, SOFT=soft, CLASS_AWARE=classes is not None,
                              num_warps=min(16, max(4, block // 256)))
    return indices, kept_scores, num_valid
