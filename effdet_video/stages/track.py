"""Tracking in the pipeline: the ByteTracker of one stream, run in frame order on the infer thread right
after the detection filter, so that every later stage (drawing, sinks) sees each detection's identity.

With tracking, `--score-threshold` is ByteTrack's high threshold: the filter keeps detections down to the
tracker's low threshold for its second association, and a frame keeps the detections at or above the
high threshold plus the lower ones that continue a track (an object half hidden is still the object).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from effdet_video.core.frames import FrameRecord
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


class _TrailBuffer:
    """One track's (time, x, y) rows, appended in time order. A full buffer is replaced, never compacted
    in place, so the views handed out as earlier frames' trails stay as they were."""

    def __init__(self, capacity: int = 64) -> None:
        self.rows = np.empty((capacity, 3))
        self.start = self.end = 0

    def add(self, seconds: float, x: float, y: float, horizon: float) -> np.ndarray:
        if self.end == len(self.rows):
            live = self.rows[self.start:self.end]
            self.rows = np.empty((max(64, 2 * len(live)), 3))
            self.rows[:len(live)] = live
            self.start, self.end = 0, len(live)
        self.rows[self.end] = (seconds, x, y)
        self.end += 1
        self.start += int(np.searchsorted(self.rows[self.start:self.end, 0], horizon))
        return self.rows[self.start:self.end, 1:]

    @property
    def last_seconds(self) -> float:
        return float(self.rows[self.end - 1, 0])


class Trails:
    """The recent centre points of each track (display pixels), `trail_s` seconds of them."""

    def __init__(self, trail_s: float) -> None:
        self.trail_s = trail_s
        self._tracks: dict[int, _TrailBuffer] = {}

    def add(self, seconds: float, boxes: np.ndarray, track_ids: np.ndarray) -> list[np.ndarray]:
        """Record this frame's centres; per detection its trail [k, 2] (x, y), oldest first (empty when
        untracked)."""
        horizon = seconds - self.trail_s
        for track_id in [key for key, buffer in self._tracks.items() if buffer.last_seconds < horizon]:
            del self._tracks[track_id]
        centres = ((boxes[:, 0:2] + boxes[:, 2:4]) / 2).tolist()
        untracked = np.zeros((0, 2))
        trails = []
        for (x, y), track_id in zip(centres, track_ids.tolist()):
            if track_id < 0:
                trails.append(untracked)
                continue
            buffer = self._tracks.get(track_id) or self._tracks.setdefault(track_id, _TrailBuffer())
            trails.append(buffer.add(seconds, x, y, horizon))
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
