"""Tracking accuracy against a synthetic clip's ground truth (`synth_clip.write_tracking_clip`), scored by
py-motmetrics (MOTA, IDF1, identity switches): the pipeline's JSON Lines with `track_id`s are the
hypotheses, matched to the ground truth's boxes at IoU >= 0.5.

Objects mostly hidden (behind another, or out of the frame) are neither required nor penalised, as in
the MOTChallenge evaluation's preprocessing: the ground truth counts an object while at least
`min_visible` of it shows; a hypothesis on an object showing less (assigned to its visible box when
all the frame's objects are matched together, see `_without_ignored`) is left out before scoring.

Frames are paired by timestamp, not by index, so that runs that saw other frames of the same scene
(a variable-rate version of it, a live run that dropped frames) are scored on the frames they saw.
motmetrics is a test dependency (the `test` extra), imported here only.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Iterable

import numpy as np
from scipy.optimize import linear_sum_assignment

from effdet_video.tracking.association import box_iou

MATCH_IOU = 0.5
METRICS = ("mota", "idf1", "num_switches", "num_unique_objects", "num_false_positives", "num_misses",
           "num_frames", "precision", "recall")
MIN_VISIBLE = 0.6
Frame = tuple[float, np.ndarray, np.ndarray]  # pts (s), ids [n], boxes [n, 4] x0, y0, x1, y1


@dataclasses.dataclass(frozen=True)
class TruthFrame:
    """One frame of ground truth: the objects that count (ids, boxes) and the boxes of those too
    hidden to count (`ignored`)."""

    pts: float
    ids: np.ndarray
    boxes: np.ndarray
    ignored: np.ndarray


def _xyxy(annotations: list[dict]) -> np.ndarray:
    return np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in annotations)]).reshape(-1, 4)


def truth_frames(truth: dict, min_visible: float = MIN_VISIBLE) -> list[TruthFrame]:
    """Per image of the ground truth, in frame order (see the module docstring for `min_visible`)."""
    by_image: dict[int, list[dict]] = {image["id"]: [] for image in truth["images"]}
    for annotation in truth["annotations"]:
        by_image[annotation["image_id"]].append(annotation)
    frames = []
    for image in sorted(truth["images"], key=lambda image: image["frame_index"]):
        counted = [a for a in by_image[image["id"]] if a.get("visibility", 1.0) >= min_visible]
        hidden = [a for a in by_image[image["id"]] if a.get("visibility", 1.0) < min_visible]
        frames.append(TruthFrame(image["pts"], np.array([a["track_id"] for a in counted], np.int64),
                                 _xyxy(counted), _xyxy(hidden)))
    return frames


def runs_as_truth(frames: list[Frame]) -> list[TruthFrame]:
    """A run's tracked detections as the reference for another run (how alike two runs' identities are)."""
    return [TruthFrame(pts, ids, boxes, np.zeros((0, 4))) for pts, ids, boxes in frames]


def jsonl_frames(jsonl: Path) -> list[Frame]:
    """Per frame of the pipeline's JSON Lines: its pts, and the ids and boxes of its tracked detections."""
    frames = []
    for line in Path(jsonl).read_text().splitlines():
        frame = json.loads(line)
        tracked = [d for d in frame["detections"] if d.get("track_id") is not None]
        frames.append((frame["pts"], np.array([d["track_id"] for d in tracked], np.int64),
                       np.array([d["box"] for d in tracked], np.float64).reshape(-1, 4)))
    return frames


def _iou_distances(objects: np.ndarray, hypotheses: np.ndarray) -> np.ndarray:
    """motmetrics' IoU distance (1 - IoU, NaN where no match is allowed) of x0, y0, x1, y1 boxes (its
    own `iou_matrix` uses np.asfarray, which NumPy 2 removed)."""
    distance = 1.0 - box_iou(objects, hypotheses)
    return np.where(distance > 1.0 - MATCH_IOU, np.nan, distance)


def paired(reference: list[TruthFrame], other: list[Frame],
           tolerance_s: float) -> Iterable[tuple[TruthFrame, Frame]]:
    """Frames of `other` with the frame of `reference` at the same pts (within `tolerance_s`)."""
    times = np.array([frame.pts for frame in reference])
    for frame in other:
        nearest = int(np.argmin(np.abs(times - frame[0])))
        if abs(times[nearest] - frame[0]) <= tolerance_s:
            yield reference[nearest], frame


def _without_ignored(truth: TruthFrame, ids: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The hypotheses left once those on ignored objects are taken out: hypotheses are assigned to all
    the frame's objects, counted and ignored together (one to one, IoU >= 0.5, as TrackEval's
    preprocessing does), and those assigned to an ignored one are dropped."""
    if not len(truth.ignored) or not len(boxes):
        return ids, boxes
    iou = box_iou(np.concatenate([truth.boxes, truth.ignored]), boxes)
    rows, cols = linear_sum_assignment(iou, maximize=True)
    dropped = cols[(iou[rows, cols] >= MATCH_IOU) & (rows >= len(truth.boxes))]
    keep = np.ones(len(boxes), bool)
    keep[dropped] = False
    return ids[keep], boxes[keep]


def mot_metrics(runs: list[tuple[list[TruthFrame], list[Frame]]], tolerance_s: float = 1e-3) -> dict:
    """motmetrics' summary (METRICS) over all `runs` together (reference, hypotheses), each scored on the
    hypothesis frames that have a reference frame at the same time (within `tolerance_s`)."""
    import motmetrics

    accumulators = []
    for reference, hypotheses in runs:
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for truth, (_, ids, boxes) in paired(reference, hypotheses, tolerance_s):
            ids, boxes = _without_ignored(truth, ids, boxes)
            accumulator.update(truth.ids, ids, _iou_distances(truth.boxes, boxes))
        accumulators.append(accumulator)
    summary = motmetrics.metrics.create().compute_many(accumulators, metrics=list(METRICS),
                                                       names=[str(k) for k in range(len(runs))],
                                                       generate_overall=True)
    return {name: float(summary[name]["OVERALL"]) for name in METRICS}
