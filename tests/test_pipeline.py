"""run_pipeline with the fake engine: order, fixed batches, statistics, and every fault path."""
from __future__ import annotations

import signal
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video.core.control import Interrupted, RunControl
from effdet_video.core.frames import FrameRecord
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.detection_sinks import JsonLinesSink
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.prepare import picture_to_rgb, to_display_orientation
from tests.support.fakes import EngineFailure, FakeEngine, fake_detections
from tests.support.pipeline_clips import make_clip

STOP_LIMIT_S = 2.0


class StageFailure(RuntimeError):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.at = time.monotonic()  # when the fault happened, to time the stop from


class RecordingSink(FrameSink):
    """Keeps what it is given; can fail in `render` or `write` on a chosen frame."""

    needs_image = True

    def __init__(self, fail_render_on: int | None = None, fail_write_on: int | None = None) -> None:
        self.records: list[FrameRecord] = []
        self.images: list[np.ndarray] = []
        self.fail_render_on, self.fail_write_on = fail_render_on, fail_write_on
        self.finished = self.aborted = False

    def render(self, record: FrameRecord) -> None:
        if record.index == self.fail_render_on:
            raise StageFailure(f"render failed on frame {record.index}")

    def write(self, record: FrameRecord) -> None:
        if record.index == self.fail_write_on:
            raise StageFailure(f"write failed on frame {record.index}")
        self.images.append(record.image.copy())
        record.image = None
        self.records.append(record)

    def finish(self) -> None:
        self.finished = True

    def abort(self) -> None:
        self.aborted = True


class FailingSource(VideoFileSource):
    """A file source whose decoding breaks at frame `fail_on` (or yields a frame prepare cannot use)."""

    def __init__(self, path: Path, fail_on: int, bad_picture: bool = False) -> None:
        super().__init__(path)
        self.fail_on, self.bad_picture = fail_on, bad_picture

    def frames(self):
        for record in super().frames():
            if record.index == self.fail_on:
                if not self.bad_picture:
                    raise StageFailure(f"decode failed on frame {record.index}")
                record.picture = None
            yield record


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clips") / "clip.mp4", 30, rotation=90, audio=True)


def pipeline_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("effdet-") and t.is_alive()]


class GroupedSource(VideoFileSource):
    """Says its frames are on the GPU (they are not: prepare_frames then converts them one by one), so
    the pipeline prepares in groups on one worker, the way it does NVDEC's GPU frames."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.frames_on_gpu = True

    def frames(self):
        for record in super().frames():
            if record.index % 7 == 0:
                time.sleep(0.02)  # pauses: the worker finds one frame queued at times, many at others
            yield record


@pytest.mark.parametrize("source_type, preparers", [(VideoFileSource, 3), (GroupedSource, 1)])
def test_frames_reach_sinks_in_order_with_their_detections(clip, source_type, preparers):
    engine = FakeEngine(batch_size=4)
    sink = RecordingSink()
    source = source_type(clip)
    stats = run_pipeline(source, engine, [sink], PipelineOptions(prepare_workers=3, annotate_workers=3))
    source.close()
    assert [r.index for r in sink.records] == list(range(30))
    assert engine.counts == [4] * 7 + [2]  # fixed batches, the last one padded
    for record in sink.records:
        assert np.array_equal(record.detections, fake_detections(record.index)[:2])  # 0.3 < default 0.4
        assert record.pts * record.time_base == Fraction(record.index, 10)
    assert sink.finished and not sink.aborted
    assert (stats.frames, stats.decoded, stats.skipped_packets) == (30, 30, 0)
    assert [s.name for s in stats.stages] == ["decode", "prepare", "infer", "annotate", "write"]
    assert all(s.items == 30 and s.busy_s > 0 and 0 < s.utilisation <= 1.05 for s in stats.stages)
    assert stats.fps == pytest.approx(30 / stats.wall_s)
    summary = stats.summary().splitlines()
    assert len(summary) == 7 and summary[2].split()[:2] == ["prepare", str(preparers)]
    assert stats.as_dict()["stages"][2]["name"] == "infer"


def test_frames_are_upright_and_boxes_drawn_in_display_coordinates(clip):
    """The clip is stored 64x48 with a 90 degree display rotation: the engine and the boxes see 48x64."""
    engine = FakeEngine(batch_size=2, image_size=(64, 64))
    sink = RecordingSink()
    source = VideoFileSource(clip)
    run_pipeline(source, engine, [sink], PipelineOptions(detection_filter=DetectionFilter(class_ids=frozenset({3}))))
    source.close()
    with av.open(str(clip)) as container:
        coded = [picture_to_rgb(f) for f in container.decode(video=0)]
    image = sink.images[5]
    assert image.shape == (64, 48, 3)
    upright = to_display_orientation(coded[5], 90)
    car = fake_detections(5)[1].astype(int)  # x0=30, y0=20, x1=46, y1=38 in display pixels
    outside = np.ones(image.shape[:2], bool)
    outside[car[1] - 14: car[3] + 2, car[0] - 2: car[2] + 2] = False
    assert np.array_equal(image[outside], upright[outside])  # untouched outside the box and its label
    assert np.abs(image[car[1]:car[3], car[0]].astype(int) - upright[car[1]:car[3], car[0]]).max() > 50


@pytest.mark.parametrize("where", ["decode", "prepare", "engine", "annotate", "write"])
def test_a_failing_stage_stops_every_thread_and_reports_its_error(clip, tmp_path, where):
    source = (FailingSource(clip, fail_on=9, bad_picture=where == "prepare") if where in ("decode", "prepare")
              else VideoFileSource(clip))
    engine = FakeEngine(batch_size=2, delay_s=0.05, fail_on_batch=4 if where == "engine" else None)
    sink = RecordingSink(fail_render_on=9 if where == "annotate" else None,
                         fail_write_on=9 if where == "write" else None)
    video = VideoFileSink(tmp_path / "out.mp4", source.info)
    expected = {"engine": EngineFailure, "prepare": AttributeError}.get(where, StageFailure)
    started = time.monotonic()
    with pytest.raises(expected) as failure:
        run_pipeline(source, engine, [video, sink], PipelineOptions())
    while pipeline_threads() and time.monotonic() < started + 5:
        time.sleep(0.01)
    assert pipeline_threads() == []
    assert time.monotonic() - getattr(failure.value, "at", started) < STOP_LIMIT_S
    source.close()
    assert sink.aborted and not sink.finished and len(sink.records) <= 9
    assert list(tmp_path.iterdir()) == []  # the partial video is gone


def test_first_error_wins(clip):
    """The engine fails first; the sink's later failure must not replace it."""
    source = VideoFileSource(clip)
    with pytest.raises(EngineFailure, match="batch 1"):
        run_pipeline(source, FakeEngine(batch_size=2, fail_on_batch=1), [RecordingSink(fail_write_on=20)])
    source.close()


def test_outside_stop_interrupts_within_the_limit(clip, tmp_path):
    control = RunControl()
    source = VideoFileSource(clip)
    sink = JsonLinesSink(tmp_path / "out.jsonl")
    timer = threading.Timer(0.3, lambda: control.fail(Interrupted(signal.SIGTERM)))
    timer.start()
    started = time.monotonic()
    with pytest.raises(Interrupted) as stopped:
        run_pipeline(source, FakeEngine(batch_size=1, delay_s=0.2), [sink], control=control)
    source.close()
    assert stopped.value.exit_code == 143
    assert time.monotonic() - started < 0.3 + STOP_LIMIT_S
    assert list(tmp_path.iterdir()) == []


def test_outputs_appear_only_when_complete(clip, tmp_path):
    final = tmp_path / "out.mkv"
    source = VideoFileSource(clip)
    sink = VideoFileSink(final, source.info, preset="ultrafast")
    seen: list[list[str]] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(sorted(p.name for p in tmp_path.iterdir()))
            time.sleep(0.02)

    watcher = threading.Thread(target=watch)
    watcher.start()
    run_pipeline(source, FakeEngine(batch_size=2, delay_s=0.02), [sink])
    done.set()
    watcher.join()
    source.close()
    during = [names for names in seen if names and names != ["out.mkv"]]
    assert during and all(names == [sink._file.temporary.name] for names in during)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]
