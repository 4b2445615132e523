"""Batch mode (pipeline/batch_*.py, commands/batch.py): a nested folder of real clips, broken ones among
them, through a shared engine; outputs mirror the tree, failures are isolated, reruns resume."""
from __future__ import annotations

import json
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from effdet_video import cli
from effdet_video.core.control import Interrupted, RunControl
from effdet_video.engine import factory
from effdet_video.engine import shared as shared_module
from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections, ReadyDetections
from effdet_video.engine.shared import SharedEngine
from effdet_video.pipeline.batch_inputs import BatchItem, find_inputs, read_list_file
from effdet_video.pipeline.batch_manifest import MANIFEST_NAME
from effdet_video.pipeline.batch_runner import BatchOptions, run_batch
from effdet_video.pipeline.runner import PipelineOptions
from effdet_video.sinks.factory import EncoderSettings
from effdet_video.stages.infer import DetectionFilter

GOOD = {"a/pan720.mp4": 90, "a/b/pan360.mkv": 60, "corrupt-middle.mp4": 84}
BROKEN = ("broken/not-a-video.mp4", "broken/truncated.mp4")


class ContentEngine(Engine):
    """One detection per frame computed from the frame's own pixels (mean of its valid area), so a frame's
    detections do not depend on which batch, slot or stream it travelled in."""

    def __init__(self, batch_size: int = 8, device: str = "fake") -> None:
        self.batch_size, self.image_size, self.max_det, self.device = batch_size, (32, 32), 4, device
        self.batches = 0
        self._lock = threading.Lock()

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        assert batch.images.shape == (self.batch_size, 32, 32, 3)
        with self._lock:
            self.batches += 1
        detections = np.zeros((self.batch_size, self.max_det, 6), np.float32)
        for i in range(batch.count):
            height, width = batch.valid_hw[i]
            mean = float(batch.images[i, :height, :width].mean())
            detections[i, 0] = (mean, mean / 2, mean + 5, mean / 2 + 5, 0.9, 1 + int(mean) % 80)
        return ReadyDetections(DetectionBatch(detections, (np.arange(self.batch_size) < batch.count).astype(np.int32),
                                              batch.count))


@pytest.fixture
def tree(media: Path, tmp_path: Path) -> Path:
    root = tmp_path / "in"
    sources = {"a/pan720.mp4": "pan-720p30-h264-noaudio.mp4", "a/b/pan360.mkv": "pan-360p25-vfr.mkv",
               "corrupt-middle.mp4": "broken-corrupt-middle.mp4", "broken/not-a-video.mp4": "broken-not-a-video.mp4",
               "broken/truncated.mp4": "broken-truncated.mp4", "a/notes.txt": "broken-not-a-video.mp4"}
    for relative, name in sources.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(media / name, root / relative)
    return root


FAST_ENCODER = EncoderSettings(crf=30, preset="ultrafast")


def run(tree: Path, out: Path, engine: ContentEngine, kinds=("jsonl", "coco"), jobs: int = 3,
        keep: DetectionFilter = DetectionFilter()):
    items = find_inputs(tree, out)
    options = BatchOptions(out, kinds, jobs=jobs, encoder=FAST_ENCODER,
                           pipeline=PipelineOptions(detection_filter=keep, prepare_workers=1, annotate_workers=1))
    with SharedEngine([engine], linger_s=0.002) as shared:
        return run_batch(items, lambda: shared.stream_engine(2), options)


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_discovery_mirrors_the_tree_and_leaves_out_other_files_and_the_output_folder(tree: Path) -> None:
    (tree / "out" / "x").mkdir(parents=True)
    shutil.copy(tree / "a/pan720.mp4", tree / "out/x/old.mp4")
    items = find_inputs(tree, tree / "out")
    assert [item.relative.as_posix() for item in items] == sorted([*GOOD, *BROKEN])
    item = BatchItem(tree / "a/b/pan360.mkv", Path("a/b/pan360.mkv"))
    assert item.outputs(Path("/o"), ("video", "jsonl", "coco")) == {
        "video": Path("/o/a/b/pan360.mkv"), "jsonl": Path("/o/a/b/pan360.mkv.jsonl"),
        "coco": Path("/o/a/b/pan360.mkv.coco.json")}


def test_a_list_file_mirrors_paths_below_their_common_folder(tree: Path) -> None:
    listing = tree / "list.txt"
    listing.write_text("# inputs\na/pan720.mp4\n\na/b/pan360.mkv\n")
    assert [item.relative.as_posix() for item in read_list_file(listing)] == ["pan720.mp4", "b/pan360.mkv"]


def test_folder_outputs_mirror_the_tree_broken_files_fail_alone_and_match_a_direct_run(tree: Path,
                                                                                       tmp_path: Path) -> None:
    out = tmp_path / "out"
    engine = ContentEngine()
    summary = run(tree, out, engine)
    by_input = {item.input: item for item in summary.items}
    assert {key: item.frames for key, item in by_input.items() if item.status == "done"} == GOOD
    assert by_input["corrupt-middle.mp4"].skipped_packets == 6
    for key in BROKEN:
        assert by_input[key].status == "failed" and by_input[key].error.startswith("not a readable video file")
    assert not summary.ok and summary.totals()["frames"] == sum(GOOD.values())
    for key, frames in GOOD.items():
        rows = jsonl(out / f"{key}.jsonl")
        assert [row["index"] for row in rows] == list(range(frames))
        assert len(json.loads((out / f"{key}.coco.json").read_text())) == frames
    assert list((out / "broken").iterdir()) == []

    direct = tmp_path / "direct"
    direct_summary = run(tree / "a", direct, ContentEngine(), jobs=1)
    assert jsonl(direct / "pan720.mp4.jsonl") == jsonl(out / "a/pan720.mp4.jsonl")
    assert jsonl(direct / "b/pan360.mkv.jsonl") == jsonl(out / "a/b/pan360.mkv.jsonl")
    assert direct_summary.ok


def test_a_rerun_skips_done_inputs_and_redoes_missing_outputs_failures_and_changed_options(tree: Path,
                                                                                         tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(tree, out, ContentEngine())
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["entries"]["a/pan720.mp4"]["status"] == "done"
    assert manifest["entries"]["broken/truncated.mp4"]["status"] == "failed"

    engine = ContentEngine()
    again = run(tree, out, engine)
    assert {item.input: item.status for item in again.items} == {**{k: "skipped" for k in GOOD},
                                                                 **{k: "failed" for k in BROKEN}}
    assert engine.batches == 0
    assert {item.input: item.frames for item in again.items if item.status == "skipped"} == GOOD

    (out / "a/b/pan360.mkv.coco.json").unlink()
    stale = out / "a/.pan720.mp4.partial-99999.jsonl"  # left by a killed run
    stale.write_text("{")
    redone = run(tree, out, ContentEngine())
    assert {item.input for item in redone.items if item.status == "done"} == {"a/b/pan360.mkv"}
    assert (out / "a/b/pan360.mkv.coco.json").is_file() and stale.exists()  # pan720 was skipped: untouched

    changed = run(tree, out, ContentEngine(), keep=DetectionFilter(score_threshold=0.5))
    assert {item.input for item in changed.items if item.status == "done"} == set(GOOD)
    assert not stale.exists()


def test_annotated_videos_keep_the_input_name_and_frame_count(tree: Path, tmp_path: Path) -> None:
    import av

    out = tmp_path / "out"
    summary = run(tree / "a" / "b", out, ContentEngine(), kinds=("video",), jobs=1)
    assert summary.ok and [p.name for p in out.iterdir() if not p.name.startswith(".")] == ["pan360.mkv"]
    with av.open(str(out / "pan360.mkv")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 60


def test_a_stopped_batch_marks_unfinished_inputs_interrupted_and_writes_no_partial_output(tree: Path,
                                                                                        tmp_path: Path) -> None:
    out = tmp_path / "out"
    control = RunControl()
    control.fail(KeyboardInterrupt())
    items = find_inputs(tree, out)
    summary = run_batch(items, ContentEngine, BatchOptions(out, ("jsonl",)), control=control)
    assert summary.interrupted and {item.status for item in summary.items} == {"interrupted"}
    assert [p.name for p in out.iterdir()] == []


def test_a_stop_in_the_middle_stops_every_running_input_and_removes_their_partial_outputs(tree: Path,
                                                                                          tmp_path: Path) -> None:
    class SlowEngine(ContentEngine):
        def submit(self, batch: InferenceBatch) -> PendingDetections:
            time.sleep(0.05)
            return super().submit(batch)

    out = tmp_path / "out"
    control = RunControl()
    threading.Timer(0.5, control.fail, args=(Interrupted(signal.SIGINT),)).start()
    options = BatchOptions(out, ("jsonl",), jobs=2, pipeline=PipelineOptions(prepare_workers=1, annotate_workers=1))
    summary = run_batch(find_inputs(tree, out), lambda: SlowEngine(2), options, control=control)
    assert summary.interrupted and not summary.ok
    assert {item.status for item in summary.items} == {"interrupted"}  # running ones stopped, the rest never began
    assert [path for path in out.rglob("*") if path.is_file()] == []


@pytest.fixture
def fake_devices(monkeypatch: pytest.MonkeyPatch) -> list[ContentEngine]:
    """The command's engines become ContentEngines on pretend devices (no GPU needed)."""
    built: list[ContentEngine] = []

    def build_engine(spec):
        built.append(ContentEngine(spec.batch_size, spec.device))
        return built[-1]

    monkeypatch.setattr(factory, "resolve_device", lambda device: device)
    monkeypatch.setattr(factory, "build_engine", build_engine)
    monkeypatch.setattr(shared_module, "_bind_device", lambda device: None)
    return built


def test_the_command_uses_one_engine_per_device_writes_the_summary_and_exits_1_on_failures(
        tree: Path, tmp_path: Path, fake_devices: list[ContentEngine], capsys: pytest.CaptureFixture) -> None:
    out, report = tmp_path / "out", tmp_path / "summary.json"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(tree), "-o", str(out), "--format", "jsonl", "--devices", "cuda:0,cuda:1",
                  "--batch-size", "4", "--jobs", "3", "--stream-batch", "2", "--summary-json", str(report)])
    assert exit_info.value.code == 1
    assert [engine.device for engine in fake_devices] == ["cuda:0", "cuda:1"]
    assert all(engine.batches > 0 for engine in fake_devices)
    data = json.loads(report.read_text())
    assert data["totals"] == {**data["totals"], "files": 5, "done": 3, "failed": 2, "frames": sum(GOOD.values())}
    assert [engine["device"] for engine in data["engines"]] == ["cuda:0", "cuda:1"]
    assert sum(engine["frames"] for engine in data["engines"]) == sum(GOOD.values())
    assert (data["jobs"], data["engine_batch"], data["stream_batch"]) == (3, 4, 2)
    stderr = capsys.readouterr().err
    assert "5 files: 3 done, 0 skipped, 2 failed" in stderr and "failed broken/truncated.mp4: " in stderr

    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(tree / "a"), "-o", str(tmp_path / "ok"), "--format", "jsonl", "--device", "cpu"])
    assert exit_info.value.code == 0


def test_bad_arguments_are_one_line_user_errors(tree: Path, tmp_path: Path, fake_devices: list,
                                                capsys: pytest.CaptureFixture) -> None:
    for args, message in ((["--format", "gif"], "--format 'gif'"), (["--devices", "cuda:0,cuda:0"], "distinct"),
                          (["--ext", "xyz"], "no input videos found")):
        with pytest.raises(SystemExit) as exit_info:
            cli.main(["batch", str(tree), "-o", str(tmp_path / "o"), *args])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err
