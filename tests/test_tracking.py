"""The tracker alone (effdet_video/tracking): association, the Kalman motion model, birth and death timed
in seconds, identities kept through missed detections, occlusions, other frame rates and dropped frames."""
import dataclasses

import numpy as np
import pytest

from effdet_video.tracking.association import box_iou, match
from effdet_video.tracking.byte_tracker import NO_TRACK, ByteTracker, TrackerSettings
from effdet_video.tracking.kalman import POSITION, VELOCITY, KalmanBoxFilter, motion_boxes

SETTINGS = TrackerSettings(high_score=0.5, low_score=0.1, birth_score=0.6, patience_s=1.0, birth_window_s=0.2)


def box_at(x: float, y: float = 100.0, size: float = 40.0) -> list[float]:
    return [x, y, x + size, y + size]


def run(tracker: ByteTracker, frames: list[tuple[float, list[list[float]], list[float], list[int]]]) -> list[list[int]]:
    return [tracker.update(np.array(b, float).reshape(-1, 4), np.array(s, float), np.array(c), t).tolist()
            for t, b, s, c in frames]


def test_box_iou_known_values():
    iou = box_iou(np.array([[0, 0, 10, 10]], float),
                  np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]], float))
    np.testing.assert_allclose(iou, [[1.0, 50 / 150, 0.0]])
    # buffered by 5 px: [-5, -5, 15, 15] against [0, -5, 20, 15] and [15, 15, 35, 35]
    buffered = box_iou(np.array([[0, 0, 10, 10]], float), np.array([[5, 0, 15, 10], [20, 20, 30, 30]], float),
                       buffers=np.array([[5.0, 5.0]]))
    np.testing.assert_allclose(buffered, [[300 / 500, 0.0]])


def test_match_is_the_optimal_assignment_within_a_class():
    tracks = np.array([box_at(0), box_at(30)], float)
    # greedy by best IoU would give detection 0 to track 1 (IoU 0.6) and leave track 0 with nothing
    dets = np.array([box_at(22), box_at(-8)], float)
    rows, cols = match(tracks, np.array([1, 1]), dets, np.array([1, 1]), min_iou=0.2)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 0)]
    rows, cols = match(tracks, np.array([1, 2]), dets, np.array([1, 1]), min_iou=0.2)  # track 1 is another class
    assert list(zip(rows.tolist(), cols.tolist())) == [(0, 1)]
    rows, cols = match(tracks, np.array([1, 1]), dets, np.array([1, 1]), min_iou=0.7)  # too little overlap
    assert len(rows) == 0


def test_kalman_predictions_compose_and_learn_the_velocity():
    kalman = KalmanBoxFilter()
    motion = kalman.initiate(np.array([box_at(0)], float))
    once = kalman.predict(motion, 0.08)
    twice = kalman.predict(kalman.predict(motion, 0.03), 0.05)
    np.testing.assert_allclose(once, twice, rtol=1e-12)  # the same model whatever the frame rate
    for step in range(1, 26):  # 25 fps, 100 px/s to the right
        motion = kalman.update(kalman.predict(motion, 0.04), np.array([box_at(4.0 * step)], float))
    assert motion[0, VELOCITY, 0] == pytest.approx(100, abs=3)
    ahead = motion_boxes(kalman.predict(motion, 0.5))[0]
    np.testing.assert_allclose(ahead, box_at(100 + 50), atol=2.5)
    assert motion[0, POSITION, 2] == pytest.approx(40, abs=0.1)


def test_first_frame_confirms_at_once_later_births_need_a_second_detection():
    tracker = ByteTracker(SETTINGS)
    ids = run(tracker, [(0.0, [box_at(0)], [0.9], [1]),
                        (0.04, [box_at(2), box_at(200)], [0.9, 0.9], [1, 1]),
                        (0.08, [box_at(4), box_at(200)], [0.9, 0.9], [1, 1])])
    assert ids == [[1], [1, NO_TRACK], [1, 2]]


def test_birth_needs_the_second_detection_within_the_birth_window_in_seconds():
    for gap, confirmed in ((0.15, True), (0.25, False)):
        tracker = ByteTracker(SETTINGS)
        run(tracker, [(0.0, [box_at(0)], [0.9], [1])])
        ids = run(tracker, [(1.0, [box_at(0), box_at(200)], [0.9, 0.9], [1, 1]),
                            (1.0 + gap, [box_at(0), box_at(200)], [0.9, 0.9], [1, 1])])
        assert ids[0] == [1, NO_TRACK]
        assert ids[1] == ([1, 2] if confirmed else [1, NO_TRACK])


def test_scores_below_the_birth_score_start_no_track():
    tracker = ByteTracker(SETTINGS)
    assert run(tracker, [(0.0, [box_at(0)], [0.55], [1]), (0.04, [box_at(0)], [0.55], [1])]) == [[NO_TRACK]] * 2


@pytest.mark.parametrize("fps", [10, 25, 50])
def test_death_after_the_patience_in_seconds_at_any_frame_rate(fps):
    """An object gone for 0.9 s comes back under its id; gone for 1.2 s (patience 1 s), under a new one."""
    for gone_s, same in ((0.9, True), (1.2, False)):
        tracker = ByteTracker(SETTINGS)
        seen = [(k / fps, [box_at(0)], [0.9], [1]) for k in range(fps)]  # 1 s in view, at rest
        missing = [(1.0 + k / fps, [], [], []) for k in range(int(round(gone_s * fps)))]
        back = [(1.0 + gone_s + k / fps, [box_at(0)], [0.9], [1]) for k in range(3)]
        ids = run(tracker, seen + missing + back)
        assert ids[fps - 1] == [1]
        assert ids[-1] == ([1] if same else [2])


def test_identity_kept_through_a_missed_detection_and_low_scores():
    tracker = ByteTracker(SETTINGS)
    frames = [(k * 0.04, [box_at(5.0 * k), box_at(300 - 5.0 * k, 200)], [0.9, 0.9], [1, 2]) for k in range(5)]
    frames.append((0.20, [box_at(300 - 25.0, 200)], [0.9], [2]))         # object 1 missed
    frames.append((0.24, [box_at(30), box_at(300 - 30.0, 200)], [0.9, 0.3], [1, 2]))  # 2 scores low
    frames.append((0.28, [box_at(35), box_at(300 - 35.0, 200)], [0.9, 0.9], [1, 2]))
    ids = run(tracker, frames)
    assert ids[4] == [1, 2] and ids[5] == [2] and ids[6] == [1, 2] and ids[7] == [1, 2]


def test_a_low_score_detection_continues_a_track_but_never_starts_one():
    tracker = ByteTracker(SETTINGS)
    ids = run(tracker, [(0.0, [box_at(0)], [0.9], [1]), (0.04, [box_at(1), box_at(200)], [0.2, 0.2], [1, 1])])
    assert ids == [[1], [1, NO_TRACK]]


def crossing_with_occlusion(times: np.ndarray) -> list[tuple[float, list[list[float]], list[float], list[int]]]:
    """Two objects of one class cross at t = 1 s; the one moving left is hidden behind the other from
    0.8 to 1.4 s (no detection of it at all)."""
    frames = []
    for t in times:
        right, left = box_at(100 + 150 * t, 100), box_at(400 - 150 * t, 110)
        hidden = 0.8 <= t < 1.4
        boxes = [right] if hidden else [right, left]
        frames.append((float(t), boxes, [0.9] * len(boxes), [1] * len(boxes)))
    return frames


def test_identities_kept_through_an_occlusion_at_a_crossing():
    ids = run(ByteTracker(SETTINGS), crossing_with_occlusion(np.arange(0, 2.0, 0.04)))
    assert ids[0] == [1, 2]
    assert all(frame_ids[0] == 1 for frame_ids in ids)  # the one in front never changes
    assert ids[-1] == [1, 2]  # the hidden one came back as itself


def test_variable_frame_rate_and_dropped_frames_give_the_same_identities():
    rng = np.random.default_rng(5)
    constant = np.arange(0, 2.0, 0.04)
    # a phone switching rates: 50 fps, then 10 fps from before the occlusion on
    variable = np.r_[np.arange(0, 0.7, 0.02), np.arange(0.7, 2.0, 0.1)]
    dropped = constant[rng.random(len(constant)) > 0.5]
    results = {}
    for name, times in (("constant", constant), ("variable", variable), ("dropped", np.r_[0.0, dropped[1:]])):
        frames = crossing_with_occlusion(times)
        ids = run(ByteTracker(SETTINGS), frames)
        # the id of each object (by where it was drawn) at every frame where both are seen
        results[name] = {tuple(i) for i, (_, boxes, _, _) in zip(ids, frames) if len(boxes) == 2 and NO_TRACK not in i}
    assert results["constant"] == results["variable"] == results["dropped"] == {(1, 2)}


def test_a_lost_track_searches_wider_the_longer_it_is_unseen():
    """A small object speeds up while hidden for 0.5 s and comes back 20 px off its predicted place: no
    overlap with the prediction, but within the buffer the prediction's uncertainty gives it."""
    def frames(settings: TrackerSettings) -> list[list[int]]:
        seen = [(k * 0.04, [box_at(200 * k * 0.04, size=20)], [0.9], [1]) for k in range(10)]
        hidden = [(0.4 + k * 0.04, [], [], []) for k in range(1, 13)]
        back = [(0.9 + k * 0.04, [box_at(200 * 0.36 + 240 * (0.54 + k * 0.04), size=20)], [0.9], [1])
                for k in range(3)]
        return run(ByteTracker(settings), seen + hidden + back)

    assert frames(SETTINGS)[-1] == [1]
    assert frames(dataclasses.replace(SETTINGS, lost_widen=0.0))[-1] == [2]
