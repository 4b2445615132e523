"""Tracking in the pipeline: the ByteTracker of one stream, run in frame order on the infer thread right
after the detection filter, so that every later stage (drawing, sinks) sees each detection's identity.

With tracking, `--score-threshold` is ByteTrack's high threshold: the filter keeps detections down to the
tracker's low threshold for its second association, and a frame keeps the detections at or above the
high threshold plus the lower ones that continue a track (an object half hidden is still the object).
"""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from effdet_video.pipeline.frames import FrameRecord
from effdet_video.stages.infer import DetectionFilter
from effdet_video.tracking.byte_tracker import ByteTracker, TrackerSettings

BIRTH_MARGIN = 0.1  # a track starts at the high threshold plus this (ByteTrack's det_thresh)
DEFAULT_TRAIL_S = 2.0


@dataclasses.dataclass(frozen=True)
class TrackingOptions:
    """settings: the tracker's; trail_s: how many seconds of centre points each tracked detection carries
    (`FrameRecord.trails`), None for no trails."""

    settings: TrackerSettings = TrackerSettings()
    trail_s: float | None = None


def tracking_options(score_threshold: float, patience_s: float, trails: bool) -> TrackingOptions:
    """The options of `--track` for a run whose `--score-threshold` is `score_threshold`."""
    defaults = TrackerSettings()
    settings = dataclasses.replace(defaults, high_score=score_threshold, patience_s=patience_s,
                                   low_score=min(defaults.low_score, score_threshold),
                                   birth_score=min(1.0, score_threshold + BIRTH_MARGIN))
    return TrackingOptions(settings, DEFAULT_TRAIL_S if trails else None)


def tracking_filter(detection_filter: DetectionFilter, options: TrackingOptions) -> DetectionFilter:
    """The filter that feeds the tracker: the user's, down to the tracker's low threshold."""
    return dataclasses.replace(detection_filter,
                               score_threshold=min(detection_filter.score_threshold, options.settings.low_score))


class Trails:
    """The recent centre points of each track (display pixels), `trail_s` seconds of them."""

    def __init__(self, trail_s: float) -> None:
        self.trail_s = trail_s
        self._points: dict[int, collections.deque[tuple[float, float, float]]] = {}

    def add(self, seconds: float, boxes: np.ndarray, track_ids: np.ndarray) -> list[np.ndarray]:
        """Record this frame's centres; per detection its trail [k, 2] (x, y), oldest first (empty when
        untracked)."""
        centres = (boxes[:, 0:2] + boxes[:, 2:4]) / 2
        horizon = seconds - self.trail_s
        for track_id in [key for key, points in self._points.items() if points[-1][0] < horizon]:
            del self._points[track_id]
        trails = []
        for (x, y), track_id in zip(centres.tolist(), track_ids.tolist()):
            if track_id < 0:
                trails.append(np.zeros((0, 2), np.float32))
                continue
            points = self._points.setdefault(track_id, collections.deque())
            points.append((seconds, x, y))
            while points[0][0] < horizon:
                points.popleft()
            trails.append(np.array([point[1:] for point in points], np.float32))
        return trails


class FrameTracker:
    """Sets `track_ids` (and `trails`) of each frame, in frame order; see the module docstring."""

    def __init__(self, options: TrackingOptions) -> None:
        self.options = options
        self.tracker = ByteTracker(options.settings)
        self.trails = Trails(options.trail_s) if options.trail_s else None

    def apply(self, record: FrameRecord) -> None:
        rows = record.detections
        ids = self.tracker.update(rows[:, :4], rows[:, 4], rows[:, 5], record.seconds)
        keep = (rows[:, 4] >= self.options.settings.high_score) | (ids >= 0)
        record.detections, record.track_ids = rows[keep], ids[keep]
        if self.trails is not None:
            record.trails = self.trails.add(record.seconds, record.detections[:, :4], record.track_ids)
