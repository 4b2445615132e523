"""`run_pipeline`: one stream from a source through the engine into sinks, every stage on its own
thread(s), bounded queues between them.

    decode (1) -> prepare (N) -> infer (1, ordered, fixed batches) -> annotate (M) -> sinks (1, ordered)

End of stream travels as one DONE marker per downstream worker; every stage counts the markers of its
upstream workers before passing them on. Errors and signals go through one RunControl (see core/control.py).
"""
from __future__ import annotations

import dataclasses
import os
import queue
import signal
import sys
import threading
import time
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

from tqdm import tqdm

from effdet_video.core.clock import StageClock
from effdet_video.core.control import POLL_S, Interrupted, RunControl
from effdet_video.core.frames import FrameRecord
from effdet_video.engine.base import Engine
from effdet_video.pipeline.reorder import ReorderBuffer
from effdet_video.pipeline.stats import RunStats
from effdet_video.sinks.base import FrameSink
from effdet_video.sources.base import FrameSource
from effdet_video.stages.annotate import draw_detections
from effdet_video.stages.infer import DetectionFilter, EngineBatcher
from effdet_video.stages.prepare import one_opencv_thread_per_worker, prepare_frames, prepared_in_groups
from effdet_video.stages.track import FrameTracker, TrackingOptions, tracking_filter

DONE = object()  # end-of-stream marker
T = TypeVar("T")
# Frames in GPU memory are prepared by one worker, up to this many at once (stages/prepare.py's
# prepare_frames): the GPU does the work, the host only queues a few calls per group. Host frames
# letterboxed on the engine's GPU are taken so too, by each of the prepare workers; frames the host
# prepares alone are taken one at a time, so that every worker gets some.
GPU_PREPARE_GROUP = 16


def host_workers(light: bool) -> int:
    """Prepare (and annotate) threads for frames decoded on the host: half the cores (the rest decode,
    encode and feed the engine), at most 8; at most 4 where each frame's host work is light (letterboxed
    on the engine's GPU, drawn in its planes), where more threads only contend for the GIL beside the
    encoder (docs/performance.md, item 16)."""
    return max(1, min(4 if light else 8, (os.cpu_count() or 1) // 2))


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """How a run behaves (what the engine computes is the engine's business).

    in_flight: engine batches submitted but not yet collected (overlap of accelerator and host).
    stop_timeout_s: after a stop, how long to wait for the threads before giving up on them.
    tracking: track objects (stages/track.py), one tracker per run: per stream, per live session."""

    detection_filter: DetectionFilter = DetectionFilter()
    labels: dict[int, str] | None = None
    prepare_workers: int | None = None  # None: `host_workers` for the run's path
    annotate_workers: int | None = None
    in_flight: int = 2
    progress: bool = False
    stop_timeout_s: float = 1.5
    tracking: TrackingOptions | None = None


def _timed(items: Iterable[T], clock: StageClock) -> Iterator[T]:
    """Iterate, charging the time each `next` takes to `clock` (for generators doing the work)."""
    iterator = iter(items)
    while True:
        start = time.perf_counter()
        try:
            item = next(iterator)
        except StopIteration:
            clock.add(time.perf_counter() - start, items=0)
            return
        clock.add(time.perf_counter() - start)
        yield item


class _Run:
    """The threads and queues of one run."""

    def __init__(self, source: FrameSource, engine: Engine, sinks: Sequence[FrameSink],
                 options: PipelineOptions, control: RunControl) -> None:
        self.source, self.engine, self.sinks, self.options, self.control = source, engine, sinks, options, control
        one_opencv_thread_per_worker()
        self.letterbox_device = engine.device if engine.device.startswith("cuda") else None
        self.draw = any(sink.needs_image for sink in sinks)
        self.canvas = any(sink.needs_canvas for sink in sinks)
        workers = host_workers(light=self.letterbox_device is not None and not self.draw)
        preparers = 1 if source.frames_on_gpu else options.prepare_workers or workers
        annotators = 1 if source.frames_on_gpu else options.annotate_workers or workers
        self.preparers, self.annotators = preparers, annotators
        self.prepare_group = GPU_PREPARE_GROUP if source.frames_on_gpu or self.letterbox_device else 1
        self.annotate_group = GPU_PREPARE_GROUP if source.frames_on_gpu else 1  # GPU canvases drawn on together
        self.clocks = {
            "decode": StageClock("decode"),
            "prepare": StageClock("prepare", preparers),
            "infer": StageClock("infer"),
            **({"track": StageClock("track")} if options.tracking else {}),
            "annotate": StageClock("annotate", annotators),
            "write": StageClock("write"),
        }
        self.decoded: queue.Queue = queue.Queue(maxsize=2 * max(preparers, self.prepare_group))
        self.prepared: queue.Queue = queue.Queue(maxsize=engine.batch_size + preparers)
        self.detected: queue.Queue = queue.Queue(maxsize=2 * max(annotators, self.annotate_group))
        self.annotated: queue.Queue = queue.Queue(maxsize=2 * annotators)
        self.written = 0
        self.progress = tqdm(total=source.expected_frames, unit="frame", file=sys.stderr, leave=False,
                             disable=not options.progress, dynamic_ncols=True)
        workers: list[tuple[str, Callable[[], None]]] = [("decode", self.decode)]
        workers += [(f"prepare-{i}", self.prepare) for i in range(preparers)]
        workers += [("infer", self.infer)]
        workers += [(f"annotate-{i}", self.annotate) for i in range(annotators)]
        workers += [("write", self.write)]
        self.threads = [threading.Thread(target=control.guarded(work), name=f"effdet-{name}", daemon=True)
                        for name, work in workers]

    def _ordered(self, source_queue: queue.Queue, producers: int) -> Iterator[FrameRecord]:
        """Frames of `source_queue` in index order, until each of `producers` workers sent DONE."""
        order: ReorderBuffer[FrameRecord] = ReorderBuffer()
        finished = 0
        while finished < producers:
            item = self.control.get(source_queue)
            if item is DONE:
                finished += 1
                continue
            yield from order.push(item.index, item)
        if len(order):
            raise RuntimeError(f"{len(order)} frames never reached their turn (a frame index is missing)")

    def decode(self) -> None:
        for record in _timed(self.source.frames(), self.clocks["decode"]):
            self.control.put(self.decoded, record)
        for _ in range(self.preparers):
            self.control.put(self.decoded, DONE)

    def _take(self, source_queue: queue.Queue, most: Callable[[FrameRecord], int]) -> tuple[list[FrameRecord], bool]:
        """Up to `most(first)` records: waits for the first, then takes those already queued; and whether
        the DONE marker came (nothing follows it for this worker)."""
        records: list[FrameRecord] = []
        item = self.control.get(source_queue)
        limit = most(item) if item is not DONE else 0
        while item is not DONE:
            records.append(item)
            if len(records) == limit:
                return records, False
            try:
                item = source_queue.get_nowait()
            except queue.Empty:
                return records, False
        return records, True

    def _prepare_group(self, first: FrameRecord) -> int:
        """How many frames a prepare worker takes with `first`: a group where they are prepared together
        (a source's frames in GPU memory always are)."""
        grouped = self.source.frames_on_gpu or prepared_in_groups(first.picture, self.draw, self.letterbox_device)
        return GPU_PREPARE_GROUP if grouped else 1

    def prepare(self) -> None:
        size, clock = self.engine.image_size, self.clocks["prepare"]
        done = False
        while not done:
            records, done = self._take(self.decoded, self._prepare_group)
            if records:
                with clock.busy(items=len(records)):
                    prepare_frames(records, size, self.draw, self.canvas, self.letterbox_device)
            for record in records:
                self.control.put(self.prepared, record)
        self.control.put(self.prepared, DONE)

    def infer(self) -> None:
        tracking = self.options.tracking
        tracker = FrameTracker(tracking) if tracking else None
        detection_filter = tracking_filter(self.options.detection_filter, tracking) if tracking \
            else self.options.detection_filter
        batcher = EngineBatcher(self.engine, detection_filter, self.clocks["infer"], self.options.in_flight)

        def detected(records: list[FrameRecord]) -> None:
            for done in records:
                if tracker is not None:
                    with self.clocks["track"].busy():
                        tracker.apply(done)
                self.control.put(self.detected, done)

        for record in self._ordered(self.prepared, self.preparers):
            detected(batcher.add(record))
        detected(batcher.flush())
        for _ in range(self.annotators):
            self.control.put(self.detected, DONE)

    def annotate(self) -> None:
        """Draws and renders frames for the sinks; GPU frames a group at a time (drawn on together)."""
        clock = self.clocks["annotate"]
        done = False
        while not done:
            records, done = self._take(self.detected, lambda _: self.annotate_group)
            if records:
                with clock.busy(items=0):
                    for sink in self.sinks:
                        sink.render_group(records)
            for record in records:
                with clock.busy():
                    if self.draw:
                        draw_detections(record.image, record.detections, self.options.labels, record.track_ids,
                                        record.trails)
                    for sink in self.sinks:
                        sink.render(record)
                self.control.put(self.annotated, record)
        self.control.put(self.annotated, DONE)

    def write(self) -> None:
        clock = self.clocks["write"]
        for record in self._ordered(self.annotated, self.annotators):
            with clock.busy():
                for sink in self.sinks:
                    sink.write(record)
            self.written += 1
            self.progress.update(1)
        with clock.busy(items=0):
            for sink in self.sinks:
                sink.finish()

    def wait(self) -> None:
        """Join all threads; once stopping, give them `stop_timeout_s` and then leave the stragglers
        (daemon threads) behind rather than hang."""
        deadline: float | None = None
        while any(thread.is_alive() for thread in self.threads):
            if self.control.stopping and deadline is None:
                deadline = time.monotonic() + self.options.stop_timeout_s
            if deadline is not None and time.monotonic() > deadline:
                return
            for thread in self.threads:
                thread.join(POLL_S / len(self.threads))


def run_pipeline(source: FrameSource, engine: Engine, sinks: Sequence[FrameSink],
                 options: PipelineOptions | None = None, control: RunControl | None = None) -> RunStats:
    """Run one stream to its end and return its statistics.

    On success every sink is finished (its output published). On failure - an exception in any stage,
    or `control.fail(...)` from outside, e.g. a signal handler - all threads stop within about
    `stop_timeout_s`, every sink is aborted (no partial output) and the first error is raised here.
    The caller owns `source` and `engine` (and closes them)."""
    options = options or PipelineOptions()
    control = control or RunControl()
    run = _Run(source, engine, sinks, options, control)
    started = time.perf_counter()
    try:
        for thread in run.threads:
            thread.start()
        try:
            run.wait()
        except KeyboardInterrupt:  # no signal handler installed (library use): stop like the CLI does
            control.fail(Interrupted(signal.SIGINT))
            run.wait()
    finally:
        run.progress.close()
    if control.error is not None:
        for sink in sinks:
            sink.abort()
        raise control.error
    wall = time.perf_counter() - started
    return RunStats(
        frames=run.written,
        decoded=run.clocks["decode"].stats(wall).items,
        skipped_packets=source.skipped_packets,
        dropped=source.dropped,
        wall_s=wall,
        fps=run.written / wall if wall > 0 else 0.0,
        stages=tuple(clock.stats(wall) for clock in run.clocks.values()),
    )
