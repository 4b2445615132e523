"""ByteTrack (Zhang et al., 2022) with every duration in seconds of the frames' timestamps.

Per frame: every track is predicted to the frame's time (kalman.py); confirmed and lost tracks are matched
to the high-score detections, the confirmed tracks left over to the low-score ones (an object half hidden
or blurred scores low, but is still the object), tentative tracks to the high-score detections left over;
high-score detections still unmatched start tentative tracks. Matching is by IoU within a class.
A detection that mostly covers a better one of its class (IoU >= `duplicate_iou`) is a duplicate of it,
not another object: soft-NMS, AutoML's default, lowers such boxes' scores instead of removing them, and a
lowered duplicate would keep a second track alive on the same object (ByteTrack assumes hard NMS).

Timing is by the frames' timestamps, never by frame counts, so a clip at another or a variable frame
rate, or with frames dropped, keeps the same identities:
- birth: a tentative track is confirmed (and numbered) when matched again within `birth_window_s` of its
  last detection, else it is forgotten; detections of the stream's first frame are confirmed at once;
- death: a confirmed track that goes unmatched is lost, and forgotten `patience_s` after its last
  detection; until then it can take a detection again and keeps its number. A lost track is matched
  by a buffered IoU (C-BIoU): its predicted box and the detection both widened by `lost_widen` standard
  deviations of the predicted centre, so the tolerance grows with the time it has been unseen (after
  half a second behind another object, a small one's predicted position is tens of pixels uncertain).
Tracks live as arrays (one row per track), so a frame costs a fixed number of numpy calls, not a loop.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from effdet_video.tracking.association import box_iou, match
from effdet_video.tracking.kalman import MOTION_ROWS, VELOCITY, KalmanBoxFilter, MotionNoise, motion_boxes, position_std

TENTATIVE, TRACKED, LOST = 0, 1, 2
NO_TRACK = -1
NONE = np.zeros(0, np.int64)


@dataclasses.dataclass(frozen=True)
class TrackerSettings:
    """high_score: detections at or above it take part in the first association and can start tracks;
    low_score: the floor of the second association (below high_score); birth_score: the least score
    that starts a track; *_iou: the least IoU of a match in each association (ByteTrack's 0.2, 0.5, 0.3);
    patience_s, birth_window_s, duplicate_iou, lost_widen: see the module docstring."""

    high_score: float = 0.5
    low_score: float = 0.1
    birth_score: float = 0.6
    match_iou: float = 0.2
    low_match_iou: float = 0.5
    tentative_match_iou: float = 0.3
    patience_s: float = 1.0
    birth_window_s: float = 0.2
    duplicate_iou: float = 0.7
    lost_widen: float = 1.0
    noise: MotionNoise = MotionNoise()


class ByteTracker:
    """One stream's tracks. `update` must see the frames in presentation order."""

    def __init__(self, settings: TrackerSettings = TrackerSettings()) -> None:
        self.settings = settings
        self.kalman = KalmanBoxFilter(settings.noise)
        self._time: float | None = None
        self._next_id = 1
        self._motion = np.zeros((0, MOTION_ROWS, 4))
        self._ids = np.zeros(0, np.int64)
        self._states = np.zeros(0, np.int8)
        self._classes = np.zeros(0, np.int64)
        self._last_seen = np.zeros(0)

    @property
    def track_count(self) -> int:
        """Tracks held now: tentative, confirmed and lost."""
        return len(self._ids)

    def update(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, seconds: float) -> np.ndarray:
        """One frame's detections (boxes [n, 4] x0, y0, x1, y1; scores [n]; class ids [n]) at time `seconds`
        -> the track id of each detection, NO_TRACK (-1) for those no confirmed track claims."""
        s = self.settings
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(scores, np.float64).reshape(-1)
        class_ids = np.asarray(class_ids).astype(np.int64).reshape(-1)
        first = self._time is None
        dt = 0.0 if first else max(0.0, seconds - self._time)
        self._time = seconds if first else max(self._time, seconds)
        self._forget_expired(seconds)
        self._motion[self._states == LOST, VELOCITY, 2:] = 0.0  # a lost box keeps its size (ByteTrack)
        self._motion = self.kalman.predict(self._motion, dt)
        predicted = motion_boxes(self._motion)
        lost = self._states == LOST
        buffers = None
        if lost.any():
            buffers = np.zeros((len(predicted), 2))
            buffers[lost] = s.lost_widen * position_std(self._motion[lost])

        def associate(track_mask: np.ndarray, det_mask: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray]:
            if not (track_mask.any() and det_mask.any()):
                return NONE, NONE
            tracks, dets = np.flatnonzero(track_mask), np.flatnonzero(det_mask)
            rows, cols = match(predicted[tracks], self._classes[tracks], boxes[dets], class_ids[dets], min_iou,
                               None if buffers is None else buffers[tracks])
            return tracks[rows], dets[cols]

        usable = ~self._duplicates(boxes, scores, class_ids)
        high = usable & (scores >= s.high_score)
        low = usable & ~high & (scores >= s.low_score)
        states = self._states
        tracks_1, dets_1 = associate(states != TENTATIVE, high, s.match_iou)
        free_high = high.copy()
        free_high[dets_1] = False
        free_tracked = states == TRACKED
        free_tracked[tracks_1] = False
        tracks_2, dets_2 = associate(free_tracked, low, s.low_match_iou)
        tracks_3, dets_3 = associate(states == TENTATIVE, free_high, s.tentative_match_iou)
        free_high[dets_3] = False

        matched_tracks = np.concatenate([tracks_1, tracks_2, tracks_3])
        matched_dets = np.concatenate([dets_1, dets_2, dets_3])
        self._motion[matched_tracks] = self.kalman.update(self._motion[matched_tracks], boxes[matched_dets])
        self._last_seen[matched_tracks] = seconds
        unmatched = np.ones(len(states), bool)
        unmatched[matched_tracks] = False
        states[unmatched & (states == TRACKED)] = LOST
        self._ids[tracks_3] = self._new_ids(len(tracks_3))
        states[matched_tracks] = TRACKED

        ids = np.full(len(boxes), NO_TRACK, np.int64)
        ids[matched_dets] = self._ids[matched_tracks]
        births = np.flatnonzero(free_high & (scores >= s.birth_score))
        if len(births):
            born_ids = self._new_ids(len(births)) if first else np.full(len(births), NO_TRACK, np.int64)
            self._add_tracks(boxes[births], class_ids[births], born_ids, TRACKED if first else TENTATIVE, seconds)
            ids[births] = born_ids
        return ids

    def _duplicates(self, boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """Whether each detection duplicates a better-scoring one of its class (see the module docstring)."""
        if len(boxes) < 2:
            return np.zeros(len(boxes), bool)
        overlap = box_iou(boxes, boxes) >= self.settings.duplicate_iou
        overlap &= (class_ids[:, None] == class_ids[None, :]) & (scores[:, None] > scores[None, :])
        return overlap.any(axis=0)

    def _new_ids(self, count: int) -> np.ndarray:
        ids = np.arange(self._next_id, self._next_id + count, dtype=np.int64)
        self._next_id += count
        return ids

    def _forget_expired(self, seconds: float) -> None:
        """Drop lost tracks past their patience and tentative ones past their birth window."""
        if not len(self._ids):
            return
        age = seconds - self._last_seen
        expired = ((self._states == LOST) & (age > self.settings.patience_s)) | (
            (self._states == TENTATIVE) & (age > self.settings.birth_window_s))
        if expired.any():
            keep = ~expired
            self._motion = self._motion[keep]
            self._ids, self._states = self._ids[keep], self._states[keep]
            self._classes, self._last_seen = self._classes[keep], self._last_seen[keep]

    def _add_tracks(self, boxes: np.ndarray, class_ids: np.ndarray, ids: np.ndarray, state: int,
                    seconds: float) -> None:
        self._motion = np.concatenate([self._motion, self.kalman.initiate(boxes)])
        self._ids = np.concatenate([self._ids, ids])
        self._states = np.concatenate([self._states, np.full(len(ids), state, np.int8)])
        self._classes = np.concatenate([self._classes, class_ids])
        self._last_seen = np.concatenate([self._last_seen, np.full(len(ids), seconds)])
