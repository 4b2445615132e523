"""Matching tracks to detections: IoU cost, solved as a linear assignment (scipy's Hungarian solver)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """[n, 4] x [m, 4] x0, y0, x1, y1 -> [n, m] intersection over union."""
    top_left = np.maximum(boxes_a[:, None, :2], boxes_b[None, :, :2])
    bottom_right = np.minimum(boxes_a[:, None, 2:], boxes_b[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=2)
    area_a = np.prod(boxes_a[:, 2:] - boxes_a[:, :2], axis=1)
    area_b = np.prod(boxes_b[:, 2:] - boxes_b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - intersection
    return intersection / np.maximum(union, 1e-9)


def match(track_boxes: np.ndarray, track_classes: np.ndarray, det_boxes: np.ndarray, det_classes: np.ndarray,
          min_iou: float) -> tuple[np.ndarray, np.ndarray]:
    """The assignment of tracks to detections of the same class maximising total IoU, keeping only pairs
    with IoU >= min_iou; returns (track indices, detection indices) of the kept pairs."""
    if not len(track_boxes) or not len(det_boxes):
        empty = np.zeros(0, np.int64)
        return empty, empty
    iou = box_iou(track_boxes, det_boxes)
    iou[track_classes[:, None] != det_classes[None, :]] = 0.0
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = iou[rows, cols] >= min_iou
    return rows[keep], cols[keep]
