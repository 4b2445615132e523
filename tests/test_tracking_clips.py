"""Tracking through the whole pipeline with the shipped demo model, on generated clips held out from
development (seeds never used while the tracker was tuned), scored by py-motmetrics: against the
ground truth, between the constant-rate and variable-rate versions of a scene, and in a live run that
drops frames."""
import json

import pytest

from effdet_video.configs.labels import labels_for_weights
from effdet_video.demo import clip_eval, synth_clip, track_eval
from effdet_video.demo.scene_kit import load_scene_kit
from effdet_video.engine import cpu_runtimes
from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.models.checkpoints import DEMO_MODEL, demo_weights
from effdet_video.pipeline.live_runner import LiveOutputs, run_live
from effdet_video.sources.live_source import LiveOptions, parse_location
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import tracking_options
from tests.support.fakes import PacedEngine

pytest.importorskip("motmetrics")
pytestmark = pytest.mark.slow

HELD_OUT_SEEDS = (4101, 4102, 4103)  # development used 101-104
SCORE_THRESHOLD = 0.4  # the CLI's default
TRACKING = tracking_options(SCORE_THRESHOLD, patience_s=1.0, trails=False)
SPEC = EngineSpec(model=DEMO_MODEL, weights=str(demo_weights()), batch_size=4, device="cpu")
LIVE_ENGINE_S = 0.1


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Per held-out seed and frame timing ('cfr' 25 fps, 'vfr'): the clip, its ground truth and the
    tracked detections of the pipeline."""
    folder = tmp_path_factory.mktemp("tracking-clips")
    kit, labels = load_scene_kit(), labels_for_weights(demo_weights())
    out = {}
    for seed in HELD_OUT_SEEDS:
        for timing, fps in (("cfr", 25), ("vfr", None)):
            clip = folder / f"scene-{seed}-{timing}.mp4"
            truth = synth_clip.write_tracking_clip(kit, clip, seed=seed, fps=fps)
            jsonl = folder / f"scene-{seed}-{timing}.jsonl"
            clip_eval.detect_clip(clip, SPEC, jsonl, labels, score_threshold=SCORE_THRESHOLD, tracking=TRACKING)
            out[seed, timing] = clip, truth, track_eval.jsonl_frames(jsonl)
    return out


def test_held_out_clips_mota_idf1_and_id_switches(runs):
    metrics = track_eval.mot_metrics([(track_eval.truth_frames(truth), frames)
                                      for (_, timing), (_, truth, frames) in runs.items() if timing == "cfr"])
    print("held-out tracking", metrics)
    assert metrics["num_unique_objects"] == 6 * len(HELD_OUT_SEEDS)
    assert metrics["mota"] >= 0.90
    assert metrics["idf1"] >= 0.90
    assert metrics["num_switches"] <= metrics["num_unique_objects"] / 10


def test_variable_frame_rate_gives_the_same_identities(runs):
    pairs = [(track_eval.runs_as_truth(runs[seed, "cfr"][2]), runs[seed, "vfr"][2]) for seed in HELD_OUT_SEEDS]
    between = track_eval.mot_metrics(pairs)
    against_truth = track_eval.mot_metrics([(track_eval.truth_frames(runs[seed, "vfr"][1]), runs[seed, "vfr"][2])
                                            for seed in HELD_OUT_SEEDS])
    print("vfr vs cfr", between, "vfr vs truth", against_truth)
    assert between["num_frames"] >= 20 * len(HELD_OUT_SEEDS)  # frames at the same time in both
    assert between["idf1"] >= 0.98
    assert against_truth["mota"] >= 0.90 and against_truth["idf1"] >= 0.90


def test_live_run_with_dropped_frames_keeps_identities(runs, tmp_path):
    """The clip played in real time as a live source; the engine, the CPU engine `live` runs, paced to
    LIVE_ENGINE_S a frame (10 fps against the clip's 25), cannot keep up, so the live source drops about
    half the frames or more, whatever the machine's load. Live pts are capture times since the first
    frame (within a few ms of the file's), so frames pair with the ground truth within half a frame
    period."""
    clip, truth, _ = runs[HELD_OUT_SEEDS[0], "cfr"]
    jsonl = tmp_path / "live.jsonl"
    backend = "onnxruntime" if cpu_runtimes.installed(("onnxruntime", *cpu_runtimes.EXPORT_MODULES)) else "eager"
    spec = EngineSpec(model=DEMO_MODEL, weights=str(demo_weights()), batch_size=1, device="cpu",
                      cpu_backend=backend)
    result = run_live(parse_location(str(clip)), LiveOptions(realtime=True),
                      lambda: PacedEngine(build_engine(spec), LIVE_ENGINE_S),
                      LiveOutputs(jsonl=str(jsonl), tracks_json=tmp_path / "tracks.json"),
                      DetectionFilter(SCORE_THRESHOLD), labels_for_weights(demo_weights()), tracking=TRACKING)
    frames = track_eval.jsonl_frames(jsonl)
    metrics = track_eval.mot_metrics([(track_eval.truth_frames(truth), frames)], tolerance_s=0.02)
    print("live", result["dropped"], "dropped of", result["decoded"], metrics)
    assert result["dropped"] > 0 and metrics["num_frames"] == len(frames)
    assert metrics["idf1"] >= 0.85
    summary = json.loads((tmp_path / "tracks.json").read_text())
    assert {track["track_id"] for track in summary} == {i for _, ids, _ in frames for i in ids.tolist()}
