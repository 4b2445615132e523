"""`effdet-video bench` on the CPU: engine rows and the end-to-end video comparison, on a tiny clip."""
from __future__ import annotations

import json

from click.testing import CliRunner

from effdet_video.commands.bench import command as bench_command
from tests.support.pipeline_clips import make_clip

FRAMES = 12


def test_bench_video_runs_all_five_pipelines_over_every_frame(tmp_path):
    clip = make_clip(tmp_path / "tiny.mp4", width=96, height=64, frames=FRAMES)
    report = tmp_path / "bench.json"
    result = CliRunner().invoke(bench_command, [
        "--device", "cpu", "--batch-sizes", "2", "--nms", "device,host", "--no-peers", "--no-startup",
        "--seconds", "0.2", "--image-size", "128", "--video", str(clip), "--json", str(report)],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    data = json.loads(report.read_text())
    engines = {row["spec"]["nms_mode"]: row for row in data["engines"]}
    assert set(engines) == {"device", "host"}
    for row in engines.values():
        assert row["engine"] == "CpuEngine" and row["img_s"] > 0
        assert row["latency"]["p50_ms"] <= row["latency"]["p99_ms"]
    video = data["video"]
    for run in ("ours", "ours_20_boxes", "ours_no_video", "transcode", "encode_only", "naive"):
        assert video[run]["frames"] == FRAMES, run
        assert video[run]["fps"] > 0
    assert video["naive"]["detector"].startswith("effdet-video engine")  # no GPU here: our engine, batch 1
    assert video["ours"]["decoder"] == video["ours_no_video"]["decoder"] == "cpu"  # auto, on a CPU engine
    stage_names = [stage["name"] for stage in video["ours"]["stages"]]
    assert stage_names == ["decode", "prepare", "infer", "annotate", "write"]
    assert video["ours"]["bound_by"] in stage_names
    # The encoder's moments on the run's clock: its wait for the first frame, its frames, its end, and what
    # the run did after it, one after another, add up to the run.
    ours, encoder = video["ours"], video["ours"]["encoder"]
    assert 0 < encoder["first_frame_after_s"] < ours["wall_s"] and 0 <= encoder["after_encoder_done_s"]
    parts = ("first_frame_after_s", "frames_s", "finish_s", "after_encoder_done_s")
    assert abs(sum(encoder[part] for part in parts) - ours["wall_s"]) < 0.05, encoder
    assert not [key for key in encoder if key.endswith("_at")]  # moments only as durations in the report
    assert video["ratios"]["e2e_vs_naive"] == round(video["ours"]["fps"] / video["naive"]["fps"], 3)
    assert video["ratios"]["e2e_vs_encode_only"] == round(video["ours"]["fps"] / video["encode_only"]["fps"], 3)


def test_bench_video_frame_limit(tmp_path):
    clip = make_clip(tmp_path / "tiny.mp4", width=96, height=64, frames=FRAMES)
    result = CliRunner().invoke(bench_command, [
        "--device", "cpu", "--batch-sizes", "1", "--nms", "device", "--no-peers", "--no-startup",
        "--seconds", "0.1", "--image-size", "128", "--video", str(clip), "--frames", "5", "--rounds", "3"],
        catch_exceptions=False)
    assert result.exit_code == 0, result.output
    video = json.loads(result.stdout[result.stdout.index("{"):])["video"]
    assert [video[run]["frames"] for run in ("ours", "ours_20_boxes", "ours_no_video", "transcode", "naive")] == [5, 5, 5, 5, 5]
    # Every run but the naive loop three times in turns, reported by its median round.
    for run in ("ours", "ours_20_boxes", "ours_no_video", "transcode", "encode_only", "writer_only"):
        assert len(video[run]["fps_rounds"]) == 3, run
        assert video[run]["fps"] == sorted(video[run]["fps_rounds"])[1], run
    assert "fps_rounds" not in video["naive"]


def test_the_median_round_of_an_even_count_is_the_lower_middle_one():
    from effdet_video.bench.video_bench import median_round

    rounds = [{"fps": 90.0, "cpu": 1}, {"fps": 60.0, "cpu": 2}, {"fps": 80.0, "cpu": 3}, {"fps": 70.0, "cpu": 4}]
    assert median_round(rounds) == {"fps": 70.0, "cpu": 4, "fps_rounds": [90.0, 60.0, 80.0, 70.0]}


def test_startup_probe_reports_first_detections_then_the_settled_engine():
    from effdet_video.bench.startup import measure_startup
    from effdet_video.engine.spec import EngineSpec

    spec = EngineSpec(random_weights=True, batch_size=1, device="cpu", image_size=(128, 128))
    start = measure_startup(spec, timeout_s=300)
    assert "error" not in start, start
    phases = start["phases"]
    assert 0 < phases["import_torch_s"] <= phases["engine_built_s"] <= phases["first_detections_s"]
    assert phases["first_detections_s"] <= start["first_detections_s"]  # the child's clock starts later
    assert 0 <= start["num_valid"] <= spec.max_det
    assert start["settled"]["settled_s"] >= phases["first_detections_s"]


def test_the_transcode_peer_lets_the_encoder_choose_each_frame_type(tmp_path):
    """A decoded frame keeps its source's type (this clip: I then P only), which libx264 would take as
    forced: the peer would skip x264's decisions (and its B-frames) that our writer pays for."""
    import av

    from effdet_video.bench.video_bench import _pictures, _write_all, transcode

    clip = make_clip(tmp_path / "in.mp4", 30, width=128, height=96)
    transcode(clip, None, tmp_path)
    fresh = [av.VideoFrame.from_ndarray(p.to_ndarray(format="yuv420p"), format="yuv420p") for p in _pictures(clip, None)]
    _write_all(tmp_path / "fresh.mp4", fresh)
    assert (tmp_path / "transcode.mp4").read_bytes() == (tmp_path / "fresh.mp4").read_bytes()
    with av.open(str(tmp_path / "transcode.mp4")) as written:
        assert {int(f.pict_type) for f in written.decode(video=0)} == {1, 2, 3}  # x264 chose B-frames too


def test_the_bench_runs_gpu_frames_through_the_pipeline_as_the_cli_does():
    """`bench --video` wraps its source (FirstFrames); the pipeline prepares and draws NVDEC's frames in
    groups on one worker only when the source says they are on the GPU, so the wrapper must say so."""
    import types

    from effdet_video.bench.video_bench import FirstFrames

    for on_gpu in (True, False):
        source = types.SimpleNamespace(info=None, expected_frames=300, frames_on_gpu=on_gpu)
        assert FirstFrames(source, 10).frames_on_gpu is on_gpu


def test_rounds_alternate_their_order_so_drift_favours_no_run(monkeypatch, tmp_path):
    """A machine that speeds up run after run: over two rounds every run takes the same mean place in
    the sequence, and the paired ratios are the medians of each round's own ratio."""
    from effdet_video.bench import video_bench
    from effdet_video.engine.spec import EngineSpec

    sequence: list[str] = []

    def fps_now(name: str) -> float:
        sequence.append(name)
        return 100.0 + 10 * len(sequence)

    def fake_ours(path, limit, folder, spec, video, open_source, track, detection_filter):
        name = "ours_no_video" if not video else "ours" if detection_filter.max_det != 20 else "ours_20_boxes"
        fps = fps_now(name)
        return 10, {"fps": fps, "wall_s": 10 / fps, "stages": [{"name": "infer", "utilisation": 1.0}],
                    "cpu": {}, "decoder": "cpu", "encoder": {}}

    def fake_peer(name):
        return lambda *args: {"frames": 10, "fps": fps_now(name), "wall_s": 0.1, "cpu": {}}

    monkeypatch.setattr(video_bench, "ours", fake_ours)
    def fake_timed(run, folder):  # as the pipeline's runs report their own fps, the transcode's is the clock's
        frames = run(folder)
        return {"frames": frames, "fps": 100.0 + 10 * len(sequence), "wall_s": 0.1}

    monkeypatch.setattr(video_bench, "_timed", fake_timed)
    monkeypatch.setattr(video_bench, "transcode", lambda *args: sequence.append("transcode") or 10)
    monkeypatch.setattr(video_bench, "encode_only", fake_peer("encode_only"))
    monkeypatch.setattr(video_bench, "writer_only", fake_peer("writer_only"))
    monkeypatch.setattr(video_bench, "_naive_detector", lambda spec: ("none", None))
    monkeypatch.setattr(video_bench, "naive", lambda *args: 10)

    result = video_bench.bench_video(tmp_path / "clip.mp4", EngineSpec(device="cpu"), rounds=2)
    kinds = ["ours", "ours_20_boxes", "ours_no_video", "transcode", "encode_only", "writer_only"]
    assert sequence == kinds + kinds[::-1]
    places = {kind: [i for i, name in enumerate(sequence) if name == kind] for kind in kinds}
    assert {sum(place) / 2 for place in places.values()} == {5.5}
    ours, encode = result["ours"]["fps_rounds"], result["encode_only"]["fps_rounds"]
    assert ours == [110.0, 220.0] and encode == [150.0, 180.0]
    assert result["ratios_paired"]["e2e_vs_encode_only"] == round((110 / 150 + 220 / 180) / 2, 3)


def test_a_paired_ratio_is_the_median_of_each_rounds_ratio():
    from effdet_video.bench.video_bench import paired_ratio

    assert paired_ratio([100.0, 200.0, 300.0, 400.0], [200.0, 100.0, 300.0, 800.0]) == 0.75
    assert paired_ratio([90.0, 100.0, 120.0], [100.0, 100.0, 100.0]) == 1.0
