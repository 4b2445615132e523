"""End-to-end video runs for `bench --video`, all in one process and run so their ratios are fair:

  ours:            the streaming pipeline writing an annotated video (what `effdet-video IN -o OUT` does);
  ours_20_boxes:   the same with the 20 best detections of every frame drawn whatever their score (random
                   weights score below the default threshold, so `ours` may draw nothing at all);
  ours_no_video:   the same with detections only (JSON Lines);
  ours_no_video_track: (with tracking) the same with the tracker on, and what it cost ("tracking");
  transcode:       a sequential PyAV decode -> libx264 (same settings) loop with no model;
  encode_only:     libx264 (same settings) alone, on frames decoded into memory beforehand: the encoder's
                   ceiling on this machine, which an annotated copy cannot pass;
  writer_only:     our video file writer (its encoder process, shared-memory slots) fed the same frames
                   from memory by one thread: what the writer itself costs against encode_only;
  naive:           one frame at a time: decode -> detector -> draw -> encode, no overlap, no batching
                   (rwightman's effdet under fp16 autocast when it is installed, else our engine at batch 1).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterable, Iterator

import av
import numpy as np
from av.video.frame import PictureType

from effdet_video.bench.stats import ratio
from effdet_video.core.frames import FrameRecord
from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.ops.letterbox import letterbox_uint8
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.sinks.encoding import use_all_cores
from effdet_video.sinks.factory import EncoderSettings, OutputPlan, SinkFactory
from effdet_video.sources.base import FrameSource
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.annotate import draw_detections
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import TrackingOptions

PRESET = "veryfast"
ENCODER = EncoderSettings(preset=PRESET)  # our writer's, as the peers encode: libx264 (the .mp4 default), crf 20
RATE = Fraction(30)
SourceOpener = Callable[[Path], VideoFileSource]
DRAWN_BOXES = DetectionFilter(score_threshold=0.0, max_det=20)
PAIRED_RATIOS = {"e2e_vs_transcode": ("ours", "transcode"), "e2e_vs_encode_only": ("ours", "encode_only"),
                 "e2e_20_boxes_vs_encode_only": ("ours_20_boxes", "encode_only"),
                 "e2e_vs_no_video": ("ours", "ours_no_video"), "writer_vs_encode_only": ("writer_only", "encode_only")}


class FirstFrames(FrameSource):
    """The first `limit` frames of another source (all of them when limit is None)."""

    def __init__(self, source: VideoFileSource, limit: int | None) -> None:
        self.source, self.limit = source, limit
        self.info = source.info
        self.frames_on_gpu = source.frames_on_gpu  # the pipeline then prepares and draws as the CLI's does
        total = source.expected_frames
        self.expected_frames = min(total, limit) if total and limit else (limit or total)

    def frames(self) -> Iterator[FrameRecord]:
        return itertools.islice(self.source.frames(), self.limit)

    @property
    def skipped_packets(self) -> int:  # type: ignore[override]
        return self.source.skipped_packets

    def close(self) -> None:
        self.source.close()


def _pictures(path: Path, limit: int | None) -> Iterator[av.VideoFrame]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        yield from itertools.islice(container.decode(stream), limit)


def _encoder(container: av.container.OutputContainer, template: av.VideoFrame) -> av.video.stream.VideoStream:
    stream = container.add_stream("libx264", rate=RATE, options={"preset": PRESET, "crf": "20"})
    stream.width, stream.height, stream.pix_fmt = template.width, template.height, "yuv420p"
    stream.time_base = 1 / RATE
    use_all_cores(stream)
    return stream


def _encode(container: av.container.OutputContainer, stream: av.video.stream.VideoStream,
            picture: av.VideoFrame, index: int) -> None:
    """Encode frame `index` at a constant rate (the peers keep no timestamps: they only cost time).
    The encoder chooses each frame's type itself, as in our writer and in the ffmpeg command: a decoded
    frame keeps the source's type (I, P, B), which libx264 takes as forced, sparing it the decisions."""
    picture.pts, picture.time_base, picture.pict_type = index, 1 / RATE, PictureType.NONE
    container.mux(stream.encode(picture))


def _cpu_seconds() -> tuple[float, float]:
    """CPU time (user + system) of this process and of its children that have ended (the encoder)."""
    times = os.times()
    return times.user + times.system, times.children_user + times.children_system


def cpu_per_frame(before: tuple[float, float], frames: int) -> dict:
    """Milliseconds of CPU per frame since `before`, in this process and in its ended children: where the
    cores go, which bounds a run once the encoder needs nearly all of them."""
    now = _cpu_seconds()
    own, children = (1e3 * (b - a) / max(frames, 1) for a, b in zip(before, now))
    return {"cpu_ms_per_frame": round(own + children, 2), "own_ms": round(own, 2), "children_ms": round(children, 2)}


def _timed(run: Callable[[Path], int], folder: Path) -> dict:
    """frames, wall seconds, fps and CPU per frame of `run`, engine build included (see `ours` for the
    pipeline alone)."""
    started, cpu = time.perf_counter(), _cpu_seconds()
    frames = run(folder)
    wall = time.perf_counter() - started
    return {"frames": frames, "wall_s": round(wall, 3), "fps": round(frames / wall, 1),
            "cpu": cpu_per_frame(cpu, frames)}


def _write_all(target: Path, frames: Iterable[av.VideoFrame]) -> int:
    """Encode `frames` into `target` one after another, as a sequential program would; the frame count."""
    count = 0
    with av.open(str(target), "w") as out:
        stream = None
        for frame in frames:
            if stream is None:
                stream = _encoder(out, frame)
            _encode(out, stream, frame, count)
            count += 1
        out.mux(stream.encode(None))
    return count


def transcode(path: Path, limit: int | None, folder: Path) -> int:
    return _write_all(folder / "transcode.mp4", _pictures(path, limit))


def encode_only(path: Path, limit: int | None, folder: Path) -> dict:
    """The encoder alone: frames decoded into memory first, only their encoding timed."""
    pictures = list(_pictures(path, limit))
    return _timed(lambda f: _write_all(f / "encode_only.mp4", pictures), folder)


def writer_only(path: Path, limit: int | None, folder: Path) -> dict:
    """Frames decoded into memory first, the writer opened (its process started), then only the writing
    timed."""
    source = FirstFrames(VideoFileSource(path), limit)
    try:
        records = list(source.frames())
        for record in records:
            record.canvas, record.picture, record.detections = record.picture, None, np.zeros((0, 6), np.float32)
        sink, = SinkFactory(ENCODER)(OutputPlan(video=folder / "writer_only.mp4"), source.info)
    finally:
        source.close()

    moments: list[float] = []

    def write(_folder: Path) -> int:
        moments.append(time.monotonic())
        for record in records:
            sink.render(record)
            sink.write(record)
        moments.append(time.monotonic())
        sink.finish()
        moments.append(time.monotonic())
        return len(records)

    timed = _timed(write, folder)
    started, finishing, ended = moments
    return {**timed, "encoder": {**encoder_timeline(sink.phases, started, ended),
                                 "parent_finish_s": round(ended - finishing, 4)}}


def _naive_detector(spec: EngineSpec) -> tuple[str, Callable[[np.ndarray], np.ndarray]]:
    """rows (x0, y0, x1, y1, score, class) of one RGB frame, computed alone."""
    try:
        from effdet_video.bench.peers import effdet_frame_detector

        return "effdet predict, fp16 autocast, batch 1", effdet_frame_detector(spec.model)
    except Exception:  # noqa: BLE001 - no effdet (or no GPU): our own engine without batching or overlap
        engine = build_engine(dataclasses.replace(spec, batch_size=1))
        from effdet_video.engine.base import InferenceBatch

        def detect(image: np.ndarray) -> np.ndarray:
            net_image, geometry = letterbox_uint8(image, engine.image_size)
            batch = InferenceBatch(net_image[None], np.int32([geometry.resized_hw]),
                                   np.float32([geometry.image_scale]), 1)
            return engine.infer(batch).frame(0)

        return "effdet-video engine, batch 1, no overlap", detect


def naive(path: Path, limit: int | None, folder: Path, detector: Callable[[np.ndarray], np.ndarray]) -> int:
    def annotated() -> Iterator[av.VideoFrame]:
        for picture in _pictures(path, limit):
            image = picture.to_ndarray(format="rgb24")
            draw_detections(image, DetectionFilter().apply(detector(image)))
            yield av.VideoFrame.from_ndarray(image, format="rgb24")

    return _write_all(folder / "naive.mp4", annotated())


def ours(path: Path, limit: int | None, folder: Path, spec: EngineSpec, video: bool,
         open_source: SourceOpener, tracking: TrackingOptions | None = None,
         detection_filter: DetectionFilter = DetectionFilter()) -> tuple[int, dict]:
    """Frames and the run's statistics, with the decoder that decoded (nvdec, cpu)."""
    source = FirstFrames(open_source(path), limit)
    try:
        with build_engine(spec) as engine:
            plan = OutputPlan(video=folder / "ours.mp4") if video else OutputPlan(jsonl=folder / "ours.jsonl")
            sinks = SinkFactory(ENCODER)(plan, source.info)
            cpu, started = _cpu_seconds(), time.monotonic()
            stats = run_pipeline(source, engine, sinks,
                                 PipelineOptions(detection_filter=detection_filter, tracking=tracking))
            ended = time.monotonic()
            used = cpu_per_frame(cpu, stats.frames)
    finally:
        source.close()
    encoder = {**encoder_timeline(sinks[0].phases, started, ended), "slots_pinned": sinks[0].slots_pinned} \
        if video else {}
    return stats.frames, {**stats.as_dict(), "decoder": source.source.decoder_used, "cpu": used, "encoder": encoder}


def encoder_timeline(phases: dict, started: float, ended: float) -> dict:
    """The encoder process's phases with its two moments (time.monotonic() readings) put on the run's
    clock: how long after the pipeline's start the first frame reached the encoder, and how long the
    run went on after the encoder had closed the file (publishing it, ending the process)."""
    timeline = {k: v for k, v in phases.items() if not k.endswith("_at")}
    if "first_frame_at" in phases and "done_at" in phases:
        timeline["first_frame_after_s"] = round(phases["first_frame_at"] - started, 4)
        timeline["after_encoder_done_s"] = round(ended - phases["done_at"], 4)
    return timeline


def tracking_cost(without: dict, with_tracking: dict) -> dict:
    """What the tracker cost a detections-only run: its fps ratio, and the tracker's own time on the
    infer thread per frame and as a share of the run's wall time."""
    track = next(stage for stage in with_tracking["stages"] if stage["name"] == "track")
    return {"fps_ratio": ratio(with_tracking["fps"], without["fps"]),
            "track_us_per_frame": round(track["busy_s"] / max(1, track["items"]) * 1e6, 1),
            "track_share_of_wall": round(track["busy_s"] / with_tracking["wall_s"], 4)}


def median_round(rounds: list[dict]) -> dict:
    """The round of median fps (of an even count, the lower middle one), with every round's fps in turn
    order: on a machine shared with others one run can be off by a quarter either way."""
    middle = sorted(rounds, key=lambda run: run["fps"])[(len(rounds) - 1) // 2]
    return {**middle, "fps_rounds": [run["fps"] for run in rounds]}


def bench_video(path: Path, spec: EngineSpec, limit: int | None = None,
                open_source: SourceOpener = VideoFileSource, tracking: TrackingOptions | None = None,
                open_video_source: SourceOpener | None = None, rounds: int = 1) -> dict:
    """The runs on `path` (one more with `tracking`) and their ratios (fps); `open_source` opens the
    input of our pipeline's runs (its decoder choice), `open_video_source` that of the runs that write
    video, as the CLI's does (default: `open_source`); the peers decode on the CPU. With `rounds` > 1
    our runs and the peers other than the naive loop run that many times in turns, every other round in
    the reverse order (a machine whose speed drifts within the call then favours neither side), and
    each reports its median round (`median_round`): `ratios` compare those medians, `ratios_paired` are
    the medians of each round's own ratio (`paired_ratio`)."""
    open_video_source = open_video_source or open_source
    result: dict = {"video": str(path), "frames_limit": limit, "engine": {
        k: v for k, v in dataclasses.asdict(spec).items() if v is not None}}
    with tempfile.TemporaryDirectory(prefix="effdet-bench-") as tmp:
        folder = Path(tmp)
        default = DetectionFilter()
        runs = [("ours", True, None, default), ("ours_20_boxes", True, None, DRAWN_BOXES),
                ("ours_no_video", False, None, default)]
        runs += [("ours_no_video_track", False, tracking, default)] if tracking else []

        def measure_ours(video: bool, track: TrackingOptions | None, detection_filter: DetectionFilter) -> dict:
            outcome: dict = {}

            def run(folder: Path) -> int:
                frames, outcome["stats"] = ours(path, limit, folder, spec, video,
                                                open_video_source if video else open_source, track, detection_filter)
                return frames

            timed = _timed(run, folder)
            run_stats = outcome["stats"]  # fps of the pipeline itself; the engine build is timed by `startup`
            return {**timed, "fps": round(run_stats["fps"], 1), "wall_s": round(run_stats["wall_s"], 3),
                    "with_engine_build_s": timed["wall_s"], "stages": run_stats["stages"],
                    "cpu": run_stats["cpu"], "decoder": run_stats["decoder"], "encoder": run_stats["encoder"]}

        steps: list[tuple[str, Callable[[], dict]]] = [
            *((key, functools.partial(measure_ours, *settings)) for key, *settings in runs),
            ("transcode", lambda: _timed(lambda f: transcode(path, limit, f), folder)),
            ("encode_only", lambda: encode_only(path, limit, folder)),
            ("writer_only", lambda: writer_only(path, limit, folder))]
        measured: dict[str, list[dict]] = {}
        for turn in range(rounds):
            for key, measure in steps if turn % 2 == 0 else steps[::-1]:
                measured.setdefault(key, []).append(measure())
        result.update((key, median_round(values) if rounds > 1 else values[0]) for key, values in measured.items())
        name, detector = _naive_detector(spec)
        result["naive"] = {"detector": name, **_timed(lambda f: naive(path, limit, f, detector), folder)}
    for key, *_ in runs:
        stages = result[key]["stages"]
        result[key]["bound_by"] = max(stages, key=lambda s: s["utilisation"])["name"]
    if tracking:
        result["tracking"] = tracking_cost(result["ours_no_video"], result["ours_no_video_track"])
    result["ratios"] = {
        "e2e_vs_naive": ratio(result["ours"]["fps"], result["naive"]["fps"]),
        "e2e_vs_transcode": ratio(result["ours"]["fps"], result["transcode"]["fps"]),
        "e2e_vs_encode_only": ratio(result["ours"]["fps"], result["encode_only"]["fps"]),
        "e2e_20_boxes_vs_encode_only": ratio(result["ours_20_boxes"]["fps"], result["encode_only"]["fps"]),
        "e2e_20_boxes_vs_transcode": ratio(result["ours_20_boxes"]["fps"], result["transcode"]["fps"]),
        "no_video_vs_naive": ratio(result["ours_no_video"]["fps"], result["naive"]["fps"]),
    }
    if rounds > 1:
        result["ratios_paired"] = {name: paired_ratio(result[mine]["fps_rounds"], result[theirs]["fps_rounds"])
                                   for name, (mine, theirs) in PAIRED_RATIOS.items()}
    return result


def paired_ratio(mine: list[float], theirs: list[float]) -> float:
    """The median of each round's ratio of `mine` to `theirs` (fps, rounds in order; of an even count the
    mean of the middle two): the runs of one round are seconds apart, where two runs' median rounds may
    come from different minutes of a machine whose speed changes."""
    return round(statistics.median(a / b for a, b in zip(mine, theirs, strict=True)), 3)
