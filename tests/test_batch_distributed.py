"""Batch beyond one process (pipeline/batch_processes.py, pipeline/batch_ray.py): 7 tiny clips through the
CPU engine and the shipped demo model, in 2 worker processes and in 2 actors of a local Ray cluster. The
detections equal a single-process batch's byte for byte; a worker killed in the middle of a file has that
file redone, leaving no partial output and a correct summary; a rerun redoes nothing."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from effdet_video import cli
from effdet_video.pipeline.batch_manifest import MANIFEST_NAME, SHARD_PATTERN, Manifest, ManifestEntry, shard_name

REPO = Path(__file__).resolve().parents[1]
SHORT = [f"c{index}.mp4" for index in range(6)]
LONG = "sub/long.mp4"  # the one a worker is killed in: long enough to be caught in the middle
FRAMES = {**{name: 10 for name in SHORT}, LONG: 48}
MODEL = ["--model", "demo", "--device", "cpu", "--format", "jsonl", "--score-threshold", "0.3"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from effdet_video.demo import synth_clip
    from effdet_video.demo.scene_kit import load_scene_kit

    root = tmp_path_factory.mktemp("clips")
    kit = load_scene_kit()
    for seed, (name, frames) in enumerate(FRAMES.items()):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        synth_clip.write_clip(kit, root / name, seed=seed, num_frames=frames, size=(96, 128))
        (root / name).with_name(Path(name).name + ".gt.json").unlink()
    return root


def batch(clips: Path, out: Path, *args: str) -> tuple[int, dict]:
    report = out.parent / f"{out.name}-summary.json"
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(clips), "-o", str(out), *MODEL, "-q", "--summary-json", str(report), *args])
    return exit_info.value.code, json.loads(report.read_text())


@pytest.fixture(scope="module")
def reference(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """The single-process batch's detections (two streams sharing one engine)."""
    out = tmp_path_factory.mktemp("reference") / "out"
    code, summary = batch(clips, out, "-j", "2")
    assert code == 0 and summary["totals"]["done"] == len(FRAMES)
    return {name: (out / f"{name}.jsonl").read_bytes() for name in FRAMES}


def processes_reading(paths: list[Path]) -> set[int]:
    """The pids of processes other than this one with one of `paths` open (Linux /proc)."""
    targets = {str(path.resolve()) for path in paths}
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if any(os.readlink(fd) in targets for fd in (entry / "fd").iterdir()):
                found.add(int(entry.name))
        except OSError:  # gone meanwhile, or not ours to look into
            continue
    return found


def process_reading(path: Path) -> int | None:
    return next(iter(processes_reading([path])), None)


class KillInTheMiddle(threading.Thread):
    """Kills (SIGKILL) the worker process reading LONG once it has had time for some of its frames (its
    outputs have no name until complete, so the process is found by the input it has open)."""

    def __init__(self, clip: Path) -> None:
        super().__init__(daemon=True)
        self.clip = clip
        self.killed: int | None = None

    def run(self) -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if process_reading(self.clip) is not None:
                time.sleep(0.5)  # a few of its 48 frames in
                if (pid := process_reading(self.clip)) is not None:
                    self.killed = pid
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.02)


def check_killed_run_and_rerun(clips: Path, out: Path, reference: dict[str, bytes], *args: str) -> dict:
    """The three checks; returns the first run's summary."""
    killer = KillInTheMiddle(clips / LONG)
    killer.start()
    code, summary = batch(clips, out, *args)
    killer.join()
    assert killer.killed is not None and killer.killed != os.getpid()
    with pytest.raises(ProcessLookupError):
        os.kill(killer.killed, 0)
    assert code == 0
    assert summary["totals"] == {**summary["totals"], "files": 7, "done": 7, "failed": 0, "interrupted": 0,
                                 "frames": sum(FRAMES.values())}
    assert {item["input"]: item["frames"] for item in summary["items"]} == FRAMES
    assert {name: (out / f"{name}.jsonl").read_bytes() for name in FRAMES} == reference
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == sorted(
        [MANIFEST_NAME, *(f"{name}.jsonl" for name in FRAMES)])  # no partial output, no manifest shard
    entries = json.loads((out / MANIFEST_NAME).read_text())["entries"]
    assert {key: entry["status"] for key, entry in entries.items()} == {name: "done" for name in FRAMES}

    written = {name: (out / f"{name}.jsonl").stat().st_mtime_ns for name in FRAMES}
    code, again = batch(clips, out, *args)
    assert code == 0 and again["totals"]["skipped"] == 7 and again["totals"]["frames"] == 0
    assert {name: (out / f"{name}.jsonl").stat().st_mtime_ns for name in FRAMES} == written
    return summary


@pytest.mark.slow
def test_two_worker_processes_equal_one_process_redo_a_killed_workers_file_and_resume(
        clips: Path, reference: dict[str, bytes], tmp_path: Path) -> None:
    summary = check_killed_run_and_rerun(clips, tmp_path / "out", reference, "--processes", "2", "-j", "2")
    assert summary["gpu_sharing"] == "no MPS: no GPU has two worker processes"  # CPU workers


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_worker_process_within_2_s_and_leaves_no_partial_output(
        clips: Path, reference: dict[str, bytes], tmp_path: Path, signum: int, exit_code: int) -> None:
    out = tmp_path / "out"
    process = subprocess.Popen([sys.executable, "-m", "effdet_video.cli", "batch", str(clips), "-o", str(out), *MODEL,
                                "--processes", "2", "-j", "2"], env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 90
        inputs = [clips / name for name in FRAMES]
        while len(workers := processes_reading(inputs)) < 2:  # both workers are running an input
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the batch did not start"
            time.sleep(0.02)
        sent = time.monotonic()
        process.send_signal(signum)  # the parent alone, as `kill` does (a terminal's Ctrl-C reaches all)
        _, err = process.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == exit_code, err
    assert stopped_after < 2.0
    assert err.strip().splitlines()[-1] == f"interrupted by {signal.Signals(signum).name}; no output written"
    for pid in workers:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert not list(out.rglob(".*.partial-*"))
    for output in out.rglob("*.jsonl"):  # inputs finished before the signal are complete
        assert output.read_bytes() == reference[output.relative_to(out).as_posix().removesuffix(".jsonl")]


def test_manifest_shards_merge_into_the_manifest_the_later_entry_winning(tmp_path: Path) -> None:
    def entry(status: str, at: str) -> ManifestEntry:
        return ManifestEntry(status, {"size": 1, "mtime_ns": 2}, "key", [], finished_at=at)

    main = Manifest(tmp_path)
    main.record("a.mp4", entry("failed", "2026-01-01T00:00:00+0000"))
    main.record("b.mp4", entry("done", "2026-01-01T00:00:05+0000"))
    Manifest(tmp_path, shard_name("node1-7")).record("a.mp4", entry("done", "2026-01-01T00:00:03+0000"))
    Manifest(tmp_path, shard_name("node2-9")).record("b.mp4", entry("failed", "2026-01-01T00:00:01+0000"))
    Manifest(tmp_path, shard_name("node2-9")).record("c.mp4", entry("done", "2026-01-01T00:00:02+0000"))
    assert Manifest(tmp_path).merge_shards() == 2
    assert not list(tmp_path.glob(SHARD_PATTERN))
    merged = Manifest(tmp_path)
    assert {key: merged.get(key).status for key in ("a.mp4", "b.mp4", "c.mp4")} == {
        "a.mp4": "done", "b.mp4": "done", "c.mp4": "done"}
    assert merged.get("b.mp4").finished_at == "2026-01-01T00:00:05+0000"


@pytest.mark.slow
def test_the_ray_data_detector_finds_what_the_batch_writes(clips: Path, reference: dict[str, bytes]) -> None:
    """Detector over the frames of one clip (as map_batches calls it, decoded to RGB as the pipeline does)
    gives the JSONL's detections."""
    import av

    from effdet_video.pipeline.batch_ray import Detector
    from effdet_video.stages.prepare import picture_to_rgb

    with av.open(str(clips / "c0.mp4")) as container:
        frames = [picture_to_rgb(frame) for frame in container.decode(video=0)]
    detector = Detector(model="demo", device="cpu", batch_size=4, score_threshold=0.3)
    out = detector({"image": np.stack(frames), "index": np.arange(len(frames))})
    assert list(out["index"]) == list(range(10))
    expected = [json.loads(line)["detections"] for line in reference["c0.mp4"].decode().splitlines()]
    assert [json.loads(text) for text in out["detections"]] == expected


def test_processes_and_processes_per_gpu_together_are_a_user_error(clips: Path, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["batch", str(clips), "-o", str(tmp_path / "o"), *MODEL, "--processes", "2",
                  "--processes-per-gpu", "2"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: --processes and --processes-per-gpu: give one of them"
    assert not (tmp_path / "o").exists()


@pytest.fixture(scope="module")
def ray_cluster() -> object:
    """A local Ray instance of 2 CPUs, as a 2-core CI machine has."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.slow
def test_two_ray_actors_equal_one_process_redo_a_killed_actors_file_and_resume(
        clips: Path, reference: dict[str, bytes], tmp_path: Path, ray_cluster: object) -> None:
    check_killed_run_and_rerun(clips, tmp_path / "out", reference, "--ray", "auto", "--processes", "2", "-j", "2")


@pytest.mark.slow
def test_the_detector_in_ray_data_map_batches(clips: Path, reference: dict[str, bytes], ray_cluster) -> None:
    """The README's example: frames as a Ray Dataset through map_batches(Detector) on 2 actors."""
    import av

    from effdet_video.pipeline.batch_ray import Detector
    from effdet_video.stages.prepare import picture_to_rgb

    pytest.importorskip("ray.data")
    with av.open(str(clips / "c1.mp4")) as video:
        frames = [{"index": i, "image": picture_to_rgb(f)} for i, f in enumerate(video.decode(video=0))]
    ds = ray_cluster.data.from_items(frames).map_batches(
        Detector, fn_constructor_kwargs={"model": "demo", "device": "cpu", "score_threshold": 0.3},
        batch_size=4, concurrency=2)
    rows = sorted(ds.take_all(), key=lambda row: row["index"])
    expected = [json.loads(line)["detections"] for line in reference["c1.mp4"].decode().splitlines()]
    assert [json.loads(row["detections"]) for row in rows] == expected
