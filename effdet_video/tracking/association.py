"""Matching tracks to detections: IoU cost, solved as a linear assignment (scipy's Hungarian solver)."""
from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray, buffers: np.ndarray | None = None) -> np.ndarray:
    """[n, 4] x [m, 4] x0, y0, x1, y1 -> [n, m] intersection over union. With `buffers` [n, 2] (x, y):
    the buffered IoU of C-BIoU (Yang et al., 2023), both boxes of pair (i, j) widened by row i's buffer on
    each side, which tolerates a displacement of about that much."""
    a, b = boxes_a.T, boxes_b.T  # coordinates as rows: a handful of numpy calls, whatever n and m
    grow_x, grow_y = (0.0, 0.0) if buffers is None else (2 * buffers[:, 0:1], 2 * buffers[:, 1:2])
    width = np.minimum(a[2][:, None], b[2][None, :]) - np.maximum(a[0][:, None], b[0][None, :]) + grow_x
    height = np.minimum(a[3][:, None], b[3][None, :]) - np.maximum(a[1][:, None], b[1][None, :]) + grow_y
    intersection = np.maximum(width, 0) * np.maximum(height, 0)
    area_a = ((a[2] - a[0])[:, None] + grow_x) * ((a[3] - a[1])[:, None] + grow_y)
    area_b = ((b[2] - b[0])[None, :] + grow_x) * ((b[3] - b[1])[None, :] + grow_y)
    union = area_a + area_b - intersection
    return intersection / np.maximum(union, 1e-9)


def match(track_boxes: np.ndarray, track_classes: np.ndarray, det_boxes: np.ndarray, det_classes: np.ndarray,
          min_iou: float, buffers: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The assignment of tracks to detections of the same class maximising total IoU (buffered by each
    track's `buffers`, see box_iou), keeping only pairs with IoU >= min_iou; returns (track indices,
    detection indices) of the kept pairs."""
    if not len(track_boxes) or not len(det_boxes):
        empty = np.zeros(0, np.int64)
        return empty, empty
    iou = box_iou(track_boxes, det_boxes, buffers)
    iou[track_classes[:, None] != det_classes[None, :]] = 0.0
    rows, cols = linear_sum_assignment(iou, maximize=True)
    keep = iou[rows, cols] >= min_iou
    return rows[keep], cols[keep]
