"""Box arithmetic on [..., 4] tensors in AutoML's [ymin, xmin, ymax, xmax] layout. Pure torch: any device,
any dtype, static shapes (safe inside a captured CUDA graph)."""
from __future__ import annotations

import torch


def decode_boxes(codes: torch.Tensor, anchors: torch.Tensor) -> torch.Tensor:
    """Apply regression codes [..., N, 4] (ty, tx, th, tw) to anchors [N, 4] (or any shape broadcasting
    against the codes) -> boxes [..., N, 4] yxyx.

    Same operation order as AutoML's `decode_box_outputs`, so fp32 results agree to the last bits."""
    anchors = anchors.to(codes.dtype)
    centre_ya = (anchors[..., 0] + anchors[..., 2]) / 2
    centre_xa = (anchors[..., 1] + anchors[..., 3]) / 2
    ha = anchors[..., 2] - anchors[..., 0]
    wa = anchors[..., 3] - anchors[..., 1]
    ty, tx, th, tw = codes.unbind(-1)
    w = torch.exp(tw) * wa
    h = torch.exp(th) * ha
    centre_y = ty * ha + centre_ya
    centre_x = tx * wa + centre_xa
    return torch.stack([centre_y - h / 2, centre_x - w / 2, centre_y + h / 2, centre_x + w / 2], dim=-1)


def iou_planes(boxes: torch.Tensor) -> torch.Tensor:
    """yxyx boxes [..., N, 4] -> contiguous planes [5, ..., N]: ymin, xmin, ymax, xmax (each pair ordered,
    as TF's NMS does) and area. NMS builds them once and compares one box against them per step."""
    coords = boxes.movedim(-1, 0)
    lo = torch.minimum(coords[:2], coords[2:])
    hi = torch.maximum(coords[:2], coords[2:])
    area = (hi[0] - lo[0]) * (hi[1] - lo[1])
    return torch.cat([lo, hi, area.unsqueeze(0)]).contiguous()


def iou_from_planes(planes_a: torch.Tensor, planes_b: torch.Tensor) -> torch.Tensor:
    """IoU between broadcastable `iou_planes` [5, ...] -> [...], with TF NonMaxSuppressionV5's rules
    (0 when either area is <= 0) and operation order."""
    ymin_a, xmin_a, ymax_a, xmax_a, area_a = planes_a
    ymin_b, xmin_b, ymax_b, xmax_b, area_b = planes_b
    inter_h = (torch.minimum(ymax_a, ymax_b) - torch.maximum(ymin_a, ymin_b)).clamp(min=0)
    inter_w = (torch.minimum(xmax_a, xmax_b) - torch.maximum(xmin_a, xmin_b)).clamp(min=0)
    inter = inter_h * inter_w
    iou = inter / (area_a + area_b - inter)
    return torch.where((area_a > 0) & (area_b > 0), iou, torch.zeros_like(iou))


def box_iou(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    """Pairwise IoU [..., M, N] of yxyx boxes [..., M, 4] and [..., N, 4] (same rules as above)."""
    return iou_from_planes(iou_planes(boxes_a).unsqueeze(-1), iou_planes(boxes_b).unsqueeze(-2))


def clip_boxes(boxes: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Clip yxyx boxes to [0, height] (y) and [0, width] (x)."""
    height, width = image_size
    y = boxes[..., 0::2].clamp(0, height)  # scalar bounds: no host tensor, so it can run in a CUDA graph
    x = boxes[..., 1::2].clamp(0, width)
    return torch.stack([y[..., 0], x[..., 0], y[..., 1], x[..., 1]], dim=-1)


def yxyx_to_xyxy(boxes: torch.Tensor) -> torch.Tensor:
    """AutoML's [ymin, xmin, ymax, xmax] -> our (x0, y0, x1, y1)."""
    return boxes.unflatten(-1, (2, 2)).flip(-1).flatten(-2)  # (y, x) pairs swapped, without an index tensor
