"""The sink factory (sinks/factory.py): outputs open in order, and a sink that cannot be opened takes the
ones opened before it down with it, through `run` and `batch` alike; the manifest's hash follows the typed
settings; the signal helper and the batch packing rule shared by their callers."""
from __future__ import annotations

import dataclasses
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from effdet_video.core.control import Interrupted, RunControl, stop_on_signals
from effdet_video.engine.packing import BatchBuffer
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from effdet_video.pipeline.batch_runner import BatchOptions, options_key
from effdet_video.pipeline.runner import PipelineOptions
from effdet_video.sinks import factory
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.factory import EncoderSettings, OutputPlan, open_in_order
from effdet_video.stages.infer import DetectionFilter
from tests.support.fakes import run_cli
from tests.support.pipeline_clips import make_clip


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", 6)


@pytest.fixture
def jsonl_cannot_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """The JSON Lines output fails to open, after the video sink (opened first) has started writing."""
    def refuse(path: Path, labels: object = None) -> FrameSink:
        raise UserError(f"{path}: cannot open")

    monkeypatch.setattr(factory, "JsonLinesSink", refuse)


def files_in(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.rglob("*") if path.is_file())


class Recorded(FrameSink):
    def __init__(self, log: list[str], name: str) -> None:
        self.log, self.name = log, name

    def write(self, record: object) -> None:
        """Nothing to write."""

    def finish(self) -> None:
        self.log.append(f"finish {self.name}")

    def abort(self) -> None:
        self.log.append(f"abort {self.name}")


def test_a_sink_that_cannot_open_aborts_those_opened_before_it() -> None:
    log: list[str] = []

    def broken() -> FrameSink:
        raise OSError("no")

    with pytest.raises(OSError):
        open_in_order([lambda: Recorded(log, "a"), lambda: Recorded(log, "b"), broken, lambda: Recorded(log, "c")])
    assert log == ["abort a", "abort b"]
    assert OutputPlan(jsonl=Path("d.jsonl"), video=Path("v.mp4")).paths() == {"video": Path("v.mp4"),
                                                                            "jsonl": Path("d.jsonl")}


def test_run_leaves_no_temporary_video_when_a_later_output_cannot_open(clip, tmp_path, capsys, engines,
                                                                       jsonl_cannot_open) -> None:
    code, err = run_cli(capsys, clip, "-o", tmp_path / "o.mp4", "--jsonl", tmp_path / "d.jsonl")
    assert code == 2 and err.strip() == f"error: {tmp_path / 'd.jsonl'}: cannot open"
    assert files_in(tmp_path) == []


def test_batch_leaves_no_temporary_video_when_a_later_output_cannot_open(clip, tmp_path, capsys, engines,
                                                                         jsonl_cannot_open) -> None:
    out = tmp_path / "out"
    code, err = run_cli(capsys, "batch", clip.parent, "-o", out, "--format", "video,jsonl", "--device", "cpu")
    assert code == 1 and f"failed {clip.name}: " in err and "cannot open" in err
    assert files_in(out) == [".effdet-batch.json"]


def test_the_manifest_hash_follows_the_settings_that_shape_the_outputs(tmp_path) -> None:
    base = BatchOptions(tmp_path, ("video", "jsonl"), engine=EngineSpec(model="d0", batch_size=8, device="cpu"))
    key = options_key(base)
    assert options_key(dataclasses.replace(base, jobs=9, engine=EngineSpec(batch_size=32, device="cuda:1"))) == key
    assert options_key(dataclasses.replace(base, encoder=EncoderSettings(crf=30))) != key
    assert options_key(dataclasses.replace(base, engine=EngineSpec(model="d1"))) != key
    keep = DetectionFilter(class_ids=frozenset({3, 1}))
    classes = options_key(dataclasses.replace(base, pipeline=PipelineOptions(detection_filter=keep)))
    assert classes != key and classes == options_key(dataclasses.replace(
        base, pipeline=PipelineOptions(detection_filter=DetectionFilter(class_ids=frozenset({1, 3})))))
    detections_only = dataclasses.replace(base, output_kinds=("jsonl",))
    assert options_key(dataclasses.replace(detections_only, encoder=EncoderSettings(crf=30))) == \
        options_key(detections_only)  # no video: the encoder shapes nothing


def test_signals_call_back_then_stop_the_run_and_the_previous_handler_comes_back() -> None:
    control, seen = RunControl(), []
    previous = signal.getsignal(signal.SIGTERM)
    with stop_on_signals(control, lambda signum: seen.append((signum, control.stopping))):
        os.kill(os.getpid(), signal.SIGTERM)
    assert seen == [(signal.SIGTERM, False)] and control.stopping
    assert isinstance(control.error, Interrupted) and control.error.signum == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is previous


def test_a_partial_batch_pads_its_rows_with_no_content_and_unit_scale() -> None:
    buffer = BatchBuffer(4, 8, 8)
    buffer.put(slice(0, 3), np.full((3, 8, 8, 3), 7, np.uint8), [[8, 6]] * 3, [2.0] * 3)
    full = buffer.batch(3)
    buffer.put(0, np.full((8, 8, 3), 9, np.uint8), (4, 8), 0.5)
    partial = buffer.batch(1)
    assert (full.count, partial.count) == (3, 1)
    assert partial.valid_hw.tolist() == [[4, 8], [0, 0], [0, 0], [0, 0]]
    assert partial.image_scales.tolist() == [0.5, 1.0, 1.0, 1.0]
    assert partial.images[0].max() == 9
