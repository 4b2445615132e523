"""Host-decoded frames letterboxed on the engine's device (stages/prepare.py's `letterbox_device`): the
planes are copied there and sampled as NVDEC's frames are, giving the network input of the OpenCV path
within a grey level. The arithmetic is torch's on any device, so the CPU checks it here; the GPU test
runs the same comparison where the pipeline uses it."""
from __future__ import annotations

import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from effdet_video.core.frames import FrameRecord
from effdet_video.pipeline import runner
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.sinks.base import FrameSink
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages import prepare
from effdet_video.stages.prepare import prepare_frames
from tests.support.fakes import FakeEngine

SIZE = (256, 256)


def pictures(clip: Path, count: int) -> list:
    source = VideoFileSource(clip)
    try:
        return [record.picture for _, record in zip(range(count), source.frames())]
    finally:
        source.close()


def records(frames: list, rotation: int) -> list[FrameRecord]:
    return [FrameRecord(index, index, Fraction(1, 30), rotation=rotation, picture=picture)
            for index, picture in enumerate(frames)]


def assert_letterboxed_alike(frames: list, rotation: int, device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same frames through the OpenCV path and through `device` (where the OpenCV path is then
    forbidden): same geometry, network inputs within a level, and each canvas the host picture."""
    host, on_device = records(frames, rotation), records(frames, rotation)
    prepare_frames(host, SIZE, needs_image=False, needs_canvas=True)
    monkeypatch.setattr(prepare, "letterbox_uint8", None)
    prepare_frames(on_device, SIZE, needs_image=False, needs_canvas=True, letterbox_device=device)
    for theirs, ours, picture in zip(host, on_device, frames):
        assert ours.letterbox == theirs.letterbox
        difference = np.abs(ours.net_image.astype(np.int16) - theirs.net_image)
        assert difference.max() <= 1 and difference.mean() < 0.3, (difference.max(), difference.mean())
        assert ours.canvas is picture and ours.picture is None and ours.image is None


@pytest.mark.parametrize("layout", ["yuv420p", "nv12"])
@pytest.mark.parametrize("rotation", [0, 90, 270])
def test_host_frames_letterboxed_from_their_planes_match_the_opencv_path(media: Path, layout: str, rotation: int,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    frames = [picture.reformat(format=layout) for picture in pictures(media / "pan-720p30-h264-noaudio.mp4", 2)]
    assert_letterboxed_alike(frames, rotation, "cpu", monkeypatch)


def test_frames_the_planes_path_does_not_take_stay_on_the_host(media: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """4:4:4 and odd sizes go through PyAV's conversion on the host, as without a device, and so does any
    frame whose full RGB image a sink needs (the host converts it anyway)."""
    frame = pictures(media / "pan-720p30-h264-noaudio.mp4", 1)[0]
    on_host: list[tuple[int, ...]] = []
    letterbox_on_host = prepare.letterbox_uint8
    monkeypatch.setattr(prepare, "letterbox_uint8", lambda image, *args: (on_host.append(image.shape),
                                                                        letterbox_on_host(image, *args))[1])
    for picture, needs_image in ((frame.reformat(format="yuv444p"), False),
                                 (frame.reformat(width=333, height=187), False), (frame, True)):
        host, on_device = records([picture], 0), records([picture], 0)
        prepare_frames(host, SIZE, needs_image)
        prepare_frames(on_device, SIZE, needs_image, letterbox_device="cpu")
        assert np.array_equal(host[0].net_image, on_device[0].net_image)
    assert len(on_host) == 6


class RgbSink(FrameSink):
    """Draws on the full RGB frame (as the live preview does); keeps nothing."""

    needs_image = True

    def write(self, record: FrameRecord) -> None:
        assert record.image is not None

    def finish(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_the_pipeline_letterboxes_host_frames_on_a_cuda_engines_device_in_groups(media: Path, monkeypatch) -> None:
    """The run hands the engine's device to the prepare stage only when it is a CUDA device, and its
    workers take host frames in groups only where that stage letterboxes them there together: not on a
    CPU engine, nor where a sink draws on RGB (recorded here, then prepared on the host, slowly enough
    for frames to queue up: no GPU needed)."""
    calls: list[tuple[str | None, int]] = []

    def recording(records, image_size, needs_image, needs_canvas, letterbox_device=None):
        calls.append((letterbox_device, len(records)))
        time.sleep(0.02)
        prepare_frames(records, image_size, needs_image, needs_canvas)

    monkeypatch.setattr(runner, "prepare_frames", recording)
    for device, sinks, grouped in (("cuda:0", [], True), ("cpu", [], False), ("cuda:0", [RgbSink()], False)):
        engine = FakeEngine(batch_size=4, image_size=SIZE)
        engine.device = device
        source = VideoFileSource(media / "pan-720p30-h264-noaudio.mp4")
        try:
            stats = run_pipeline(source, engine, sinks, PipelineOptions(prepare_workers=2))
        finally:
            source.close()
        assert stats.frames == 90 and sum(count for _, count in calls) == 90
        assert {asked for asked, _ in calls} == {device if device != "cpu" else None}
        assert (max(count for _, count in calls) > 1) == grouped, (device, sinks, calls)
        calls.clear()


def test_host_frames_for_a_cuda_engine_get_fewer_workers(media: Path, monkeypatch) -> None:
    """On 16 cores host-decoded frames get 8 prepare and 8 annotate threads, but 4 where their host work is
    light (a CUDA engine letterboxes them, no sink draws on RGB); a count asked for is kept."""
    monkeypatch.setattr(runner.os, "cpu_count", lambda: 16)
    monkeypatch.setattr(runner, "prepare_frames", lambda records, size, *args, **kwargs:
                        prepare_frames(records, size, *args[:2]))  # on the host: no GPU needed
    for device, sinks, asked, expected in (("cuda:0", [], None, 4), ("cpu", [], None, 8),
                                           ("cuda:0", [RgbSink()], None, 8), ("cuda:0", [], 3, 3)):
        engine = FakeEngine(batch_size=4, image_size=SIZE)
        engine.device = device
        source = VideoFileSource(media / "pan-720p30-h264-noaudio.mp4")
        try:
            stats = run_pipeline(source, engine, sinks, PipelineOptions(prepare_workers=asked, annotate_workers=asked))
        finally:
            source.close()
        workers = {stage.name: stage.workers for stage in stats.stages}
        assert stats.frames == 90 and (workers["prepare"], workers["annotate"]) == (expected, expected), (device, sinks)


@pytest.mark.gpu
def test_host_frames_letterboxed_on_the_gpu_match_the_opencv_path(media: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    frames = pictures(media / "bench-1080p30-h264-aac.mp4", 16)
    for rotation in (0, 90):
        assert_letterboxed_alike(frames, rotation, "cuda:0", monkeypatch)
        monkeypatch.undo()
