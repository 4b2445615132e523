"""The shipped demo model through the whole video pipeline, and `effdet-video demo`."""
import json

from click.testing import CliRunner

from effdet_video.commands.demo import command as demo_command
from effdet_video.configs.labels import labels_for_weights
from effdet_video.demo import clip_eval, synth_clip
from effdet_video.demo.scene_kit import load_scene_kit
from effdet_video.engine.spec import EngineSpec
from effdet_video.models.checkpoints import DEMO_MODEL, demo_weights, resolve_weights

HELD_OUT_CLIP_SEED = 11  # neither the training stills (seeds 1, 2) nor the demo clip (seed 7)


def test_pipeline_map50_on_held_out_clip(tmp_path):
    """decode -> letterbox -> CPU engine -> NMS -> frame coordinates -> JSONL, scored with AP@0.5."""
    clip = tmp_path / "held-out.mp4"
    truth = synth_clip.write_clip(load_scene_kit(), clip, seed=HELD_OUT_CLIP_SEED, num_frames=30)
    spec = EngineSpec(model=DEMO_MODEL, weights=str(demo_weights()), batch_size=4,
                      device="cpu")
    jsonl = tmp_path / "detections.jsonl"
    clip_eval.detect_clip(clip, spec, jsonl, labels_for_weights(demo_weights()))
    metrics = clip_eval.clip_map(truth, jsonl)
    print("held-out clip AP@0.5", metrics)
    assert set(metrics["per_class"]) == {1, 2, 3, 4}
    assert metrics["map"] >= 0.9
    first = json.loads(jsonl.read_text().splitlines()[0])
    assert {d["class_name"] for d in first["detections"]} <= {"cat", "cup", "rocket", "face"}


def test_demo_command_writes_clip_video_and_detections(tmp_path):
    result = CliRunner().invoke(demo_command, ["-o", str(tmp_path), "--device", "cpu", "--frames", "8"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["frames"] == 8 and summary["map50"] >= 0.9
    for name in ("demo.mp4", "demo-annotated.mp4", "demo-detections.jsonl", "demo.mp4.gt.json"):
        assert (tmp_path / name).stat().st_size > 0
    assert len((tmp_path / "demo-detections.jsonl").read_text().splitlines()) == 8


def test_demo_labels_name_the_shipped_model_classes():
    assert labels_for_weights(demo_weights()) == {1: "cat", 2: "cup", 3: "rocket", 4: "face"}


def test_demo_model_name_finds_the_packaged_weights():
    assert resolve_weights("demo", None) == demo_weights()
    assert resolve_weights("efficientdet-demo", None).stat().st_size > 1_000_000
