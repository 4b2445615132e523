"""Tracking in the pipeline and on the command line (fake engine): ids on the infer thread, what a
tracked frame keeps, trails, the JSON Lines `track_id`, the --tracks-json summary, run and batch."""
from __future__ import annotations

import json
from fractions import Fraction

import numpy as np
import pytest

from effdet_video.core.frames import FrameRecord
from effdet_video.stages.track import FrameTracker, tracking_options
from tests.support.fakes import run_cli
from tests.support.pipeline_clips import make_clip


def record(index: int, rows: list[list[float]], rate: int = 25) -> FrameRecord:
    return FrameRecord(index=index, pts=index, time_base=Fraction(1, rate),
                       detections=np.array(rows, np.float32).reshape(-1, 6))


def test_a_tracked_frame_keeps_high_scores_and_tracked_low_scores_with_their_trails():
    tracker = FrameTracker(tracking_options(score_threshold=0.5, patience_s=1.0, trails=True))
    first = record(0, [[0, 0, 20, 20, 0.9, 1], [100, 100, 120, 120, 0.45, 2]])
    tracker.apply(first)
    assert first.track_ids.tolist() == [1]  # 0.45 < 0.5 starts nothing and is not kept
    assert first.detections[:, 4].tolist() == pytest.approx([0.9])
    frames = [record(k, [[2.0 * k, 0, 2.0 * k + 20, 20, 0.2 if k == 3 else 0.9, 1],
                         [200, 200, 220, 220, 0.3, 2]]) for k in range(1, 100)]
    for frame in frames:
        tracker.apply(frame)
    assert frames[2].track_ids.tolist() == [1]  # 0.2: a low score continuing track 1 is kept
    assert frames[2].detections[0, 4] == pytest.approx(0.2)
    np.testing.assert_allclose(frames[1].trails[0], [[10, 10], [12, 10], [14, 10]])  # centres so far
    assert len(frames[-1].trails[0]) == 51  # the last 2 s at 25 fps, frames 49..99 (both ends included)
    np.testing.assert_allclose(frames[-1].trails[0][[0, -1]], [[2 * 49 + 10, 10], [2 * 99 + 10, 10]])
    np.testing.assert_allclose(frames[1].trails[0], [[10, 10], [12, 10], [14, 10]])  # earlier trails unchanged
    np.testing.assert_allclose(frames[60].trails[0][[0, -1]], [[2 * 11 + 10, 10], [2 * 61 + 10, 10]])


def test_run_with_track_writes_track_ids_and_the_tracks_summary(tmp_path, capsys, engines):
    clip = make_clip(tmp_path / "c.mp4", 10)  # the fake person moves steadily for 10 frames
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--track",
                        "--tracks-json", tmp_path / "t.json")
    assert code == 0, err
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    # fake detections: a moving person (0.9), a parked car (0.6); the dog (0.3) starts no track
    assert all([(d["class_name"], d["track_id"]) for d in row["detections"]] == [("person", 1), ("car", 2)]
               for row in rows)
    assert json.loads((tmp_path / "t.json").read_text()) == [
        {"track_id": 1, "class_id": 1, "class_name": "person", "first_pts": 0.0, "last_pts": 0.9, "frames": 10,
         "mean_score": 0.9},
        {"track_id": 2, "class_id": 3, "class_name": "car", "first_pts": 0.0, "last_pts": 0.9, "frames": 10,
         "mean_score": 0.6}]


def test_without_track_there_is_no_track_id(tmp_path, capsys, engines):
    clip = make_clip(tmp_path / "c.mp4", 3)
    assert run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl")[0] == 0
    row = json.loads((tmp_path / "d.jsonl").read_text().splitlines()[0])
    assert "track_id" not in row["detections"][0]


@pytest.mark.parametrize("args, message", [
    (["--trails", "-o", "o.mp4"], "--trails needs --track"),
    (["--tracks-json", "t.json", "-o", "o.mp4"], "--tracks-json needs --track"),
])
def test_tracking_outputs_need_track(tmp_path, capsys, engines, args, message):
    clip = make_clip(tmp_path / "c.mp4", 2)
    code, err = run_cli(capsys, clip, *[str(tmp_path / a) if a.endswith((".mp4", ".json")) else a for a in args])
    assert code == 2 and message in err
    assert not (tmp_path / "o.mp4").exists()


def test_batch_tracks_each_stream_on_its_own(tmp_path, capsys, engines):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):  # one engine, frames numbered on across inputs: 0-9, 10-19
        make_clip(folder / name, 10)
    code, err = run_cli(capsys, "batch", folder, "-o", tmp_path / "out", "--format", "jsonl,tracks", "--track",
                        "--device", "cpu", "--jobs", "1")
    assert code == 0, err
    for name in ("a.mp4", "b.mp4"):
        summary = json.loads((tmp_path / "out" / f"{name}.tracks.json").read_text())
        assert [(t["track_id"], t["frames"]) for t in summary] == [(1, 10), (2, 10)]  # numbered per stream
    assert run_cli(capsys, "batch", folder, "-o", tmp_path / "o2", "--format", "tracks")[0] == 2
