"""COCO-style average precision at one IoU threshold (what `pycocotools.COCOeval` reports as AP@0.5 for
area 'all', maxDets 100), hand-written to keep pycocotools out of the runtime dependencies.

Per category: detections are matched greedily in falling score order (per image, at most 100) to the
unmatched ground-truth box of highest IoU >= threshold; precision is made monotone and read at COCO's 101
recall points; categories without ground truth are left out of the mean.
"""
from __future__ import annotations

import numpy as np

RECALL_POINTS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 100


def _xywh_iou(dets: np.ndarray, gts: np.ndarray) -> np.ndarray:
    """Pairwise IoU [D, G] of xywh boxes."""
    d0, g0 = dets[:, None, :2], gts[None, :, :2]
    d1, g1 = d0 + dets[:, None, 2:], g0 + gts[None, :, 2:]
    inter = (np.minimum(d1, g1) - np.maximum(d0, g0)).clip(min=0).prod(-1)
    union = dets[:, None, 2:].prod(-1) + gts[None, :, 2:].prod(-1) - inter
    return inter / np.maximum(union, np.finfo(np.float64).tiny)


def _match_image(dets: list[dict], gt_boxes: np.ndarray, iou_threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """(scores, true-positive flags) of one image's detections of one category, best first."""
    dets = sorted(dets, key=lambda d: -d["score"])[:MAX_DETECTIONS]
    scores = np.array([d["score"] for d in dets], np.float64)
    tp = np.zeros(len(dets), bool)
    if not dets or not len(gt_boxes):
        return scores, tp
    iou = _xywh_iou(np.array([d["bbox"] for d in dets], np.float64), gt_boxes)
    taken = np.zeros(len(gt_boxes), bool)
    for i in range(len(dets)):
        candidates = np.where(taken, -1.0, iou[i])
        best = int(np.argmax(candidates))
        if candidates[best] >= iou_threshold:
            taken[best] = True
            tp[i] = True
    return scores, tp


def average_precision(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> float:
    """101-point interpolated AP of detections (any order) against num_gt > 0 ground-truth boxes."""
    if not len(scores):
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tp = tp[order]
    tp_sum, fp_sum = np.cumsum(tp), np.cumsum(~tp)
    recall = tp_sum / num_gt
    precision = np.maximum.accumulate((tp_sum / np.maximum(tp_sum + fp_sum, 1))[::-1])[::-1]
    index = np.searchsorted(recall, RECALL_POINTS, side="left")
    sampled = np.where(index < len(precision), precision[np.minimum(index, len(precision) - 1)], 0.0)
    return float(sampled.mean())


def mean_average_precision(ground_truth: dict, detections: list[dict], iou_threshold: float = 0.5) -> dict:
    """ground_truth: a COCO dataset dict; detections: COCO results ({image_id, category_id, bbox xywh, score}).
    Returns {'map': mean AP, 'per_class': {category_id: AP}} over the categories with ground truth."""
    gt_by_key: dict[tuple[int, int], list[list[float]]] = {}
    for ann in ground_truth["annotations"]:
        if not ann.get("iscrowd", 0):
            gt_by_key.setdefault((ann["image_id"], ann["category_id"]), []).append(ann["bbox"])
    det_by_key: dict[tuple[int, int], list[dict]] = {}
    for det in detections:
        det_by_key.setdefault((det["image_id"], det["category_id"]), []).append(det)
    per_class = {}
    for category in sorted({c for _, c in gt_by_key}):
        scores, tps, num_gt = [], [], 0
        for image in ground_truth["images"]:
            key = (image["id"], category)
            gt_boxes = np.array(gt_by_key.get(key, []), np.float64).reshape(-1, 4)
            num_gt += len(gt_boxes)
            image_scores, image_tp = _match_image(det_by_key.get(key, []), gt_boxes, iou_threshold)
            scores.append(image_scores)
            tps.append(image_tp)
        per_class[category] = average_precision(np.concatenate(scores), np.concatenate(tps), num_gt)
    return {"map": float(np.mean(list(per_class.values()))) if per_class else 0.0, "per_class": per_class}


def detections_to_coco(image_id: int, rows: np.ndarray) -> list[dict]:
    """Engine rows [n, 6] (x0, y0, x1, y1, score, class_id) -> COCO results of one image."""
    return [{"image_id": image_id, "category_id": int(r[5]), "score": float(r[4]),
             "bbox": [float(r[0]), float(r[1]), float(r[2] - r[0]), float(r[3] - r[1])]} for r in rows]
