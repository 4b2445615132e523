"""`run_batch`: many inputs, each one its own `run_pipeline` (own source, sinks and RunControl) on a
thread pool, all of them fed by one engine provider - typically per-stream views of a SharedEngine, so
that frames of several streams fill the accelerator's batches together.

Each input is isolated: its failure is recorded (summary and manifest) and the others go on. A stop of
the whole batch (Ctrl-C, SIGTERM through `stop_on_signals`) stops every running input; their outputs are
removed by the sinks, and a rerun redoes them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import glob
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

from effdet_video.core.control import POLL_S, Interrupted, RunControl
from effdet_video.engine.base import Engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from effdet_video.pipeline.batch_inputs import BatchItem
from effdet_video.pipeline.batch_manifest import Manifest, ManifestEntry, OutputShape, fingerprint, options_hash
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.pipeline.stats import RunStats
from effdet_video.sinks.factory import EncoderSettings, OutputPlan, SinkFactory
from effdet_video.sources.base import FrameSource
from effdet_video.sources.source import VideoFileSource

# The source must have `info: VideoInfo`, and may have `decoder_used`, like VideoFileSource.
SourceOpener = Callable[[Path], FrameSource]
EngineProvider = Callable[[], Engine]


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """output_kinds: a subset of ('video', 'jsonl', 'coco', 'tracks'); jobs: inputs processed at the same
    time; engine: the engine every process builds (per device); encoder: the annotated videos'; redo:
    ignore the manifest. What of these shapes the outputs is hashed into the manifest (`output_shape`)."""

    output_dir: Path
    output_kinds: tuple[str, ...]
    jobs: int = 4
    pipeline: PipelineOptions = PipelineOptions()
    engine: EngineSpec = EngineSpec()
    encoder: EncoderSettings = EncoderSettings()
    redo: bool = False

    def sink_factory(self) -> SinkFactory:
        """What opens every input's sinks."""
        return SinkFactory(self.encoder, self.pipeline.labels)


@dataclasses.dataclass
class ItemResult:
    """status: done (processed now), skipped (done by an earlier run), failed, or interrupted; decoder:
    the one that decoded the input (nvdec, cpu) when it was processed now."""

    input: str
    status: str
    frames: int = 0
    fps: float = 0.0
    wall_s: float = 0.0
    skipped_packets: int = 0
    outputs: list[str] = dataclasses.field(default_factory=list)
    error: str | None = None
    decoder: str | None = None


@dataclasses.dataclass
class BatchSummary:
    """Per-input results in input order; wall_s of the whole batch; engines: per-device statistics;
    engine_build_s: how long building the engines took (the slowest process's)."""

    items: list[ItemResult]
    wall_s: float
    engines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    interrupted: bool = False
    engine_build_s: float | None = None

    @property
    def ok(self) -> bool:
        return not self.interrupted and all(item.status in ("done", "skipped") for item in self.items)

    def totals(self) -> dict[str, Any]:
        """frames and aggregate_fps count only the inputs processed in this run."""
        processed = sum(item.frames for item in self.items if item.status == "done")
        counts = {status: sum(item.status == status for item in self.items)
                  for status in ("done", "skipped", "failed", "interrupted")}
        return {"files": len(self.items), **counts, "frames": processed, "wall_s": round(self.wall_s, 3),
                "aggregate_fps": round(processed / self.wall_s, 2) if self.wall_s > 0 else 0.0}

    def as_dict(self) -> dict[str, Any]:
        return {"totals": self.totals(), "engines": self.engines, "interrupted": self.interrupted,
                "engine_build_s": self.engine_build_s,
                "items": [dataclasses.asdict(item) for item in self.items]}

    def table(self) -> str:
        lines = [f"{'status':<12}{'frames':>8}{'fps':>9}{'s':>8}{'decoder':>8}  input"]
        for item in self.items:
            timing = f"{item.fps:>9.1f}{item.wall_s:>8.1f}" if item.status == "done" else f"{'-':>9}{'-':>8}"
            detail = f"  ({item.error})" if item.error else ""
            lines.append(f"{item.status:<12}{item.frames:>8}{timing}{item.decoder or '-':>8}  {item.input}{detail}")
        t = self.totals()
        lines.append(f"{t['files']} files: {t['done']} done, {t['skipped']} skipped, {t['failed']} failed"
                     + (f", {t['interrupted']} interrupted" if t["interrupted"] else "")
                     + f"; {t['frames']} frames in {t['wall_s']:.1f} s = {t['aggregate_fps']:.1f} fps aggregate")
        for engine in self.engines:
            lines.append(f"engine {engine['device']}: {engine['batches']} batches of {engine['batch_size']}, "
                         f"{engine['fill']:.0%} full")
        return "\n".join(lines)


def describe_error(error: BaseException) -> str:
    """One line for the summary: a UserError's own message, else the exception type and message."""
    text = str(error) if isinstance(error, (UserError, Interrupted)) else f"{type(error).__name__}: {error}"
    return " ".join(text.split())


def remove_stale_partials(output: Path) -> None:
    """Delete temporary files an earlier, killed run left beside `output` (the sinks' PartialFile names)."""
    for stale in output.parent.glob(f".{glob.escape(output.stem)}.partial-*{glob.escape(output.suffix)}"):
        stale.unlink(missing_ok=True)


def remove_partials_of(item: BatchItem, options: BatchOptions) -> None:
    """What a process killed while working on `item` left of its outputs (called where no one else works on it)."""
    for output in item.outputs(options.output_dir, options.output_kinds).values():
        if output.parent.is_dir():
            remove_stale_partials(output)


def process_item(item: BatchItem, plan: OutputPlan, engine: Engine, open_source: SourceOpener,
                 open_sinks: SinkFactory, options: PipelineOptions,
                 control: RunControl) -> tuple[RunStats, str | None]:
    """One input through its own pipeline into the outputs of `plan` (published only when complete); its
    run's statistics and the decoder that decoded it."""
    for output in plan.paths().values():
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(output)
    source = open_source(item.path)
    try:
        sinks = open_sinks(plan, source.info)
        return run_pipeline(source, engine, sinks, options, control), getattr(source, "decoder_used", None)
    finally:
        source.close()


def output_shape(options: BatchOptions) -> OutputShape:
    """What of `options` shapes the outputs: the encoder and the trails only where a video is written."""
    video = "video" in options.output_kinds
    tracking = options.pipeline.tracking
    if tracking is not None and not video:
        tracking = dataclasses.replace(tracking, trail_s=None)
    spec = options.engine
    return OutputShape(model=spec.model, weights=spec.weights, random_weights=spec.random_weights,
                       precision=spec.precision, max_det=spec.max_det,
                       detection_filter=options.pipeline.detection_filter, tracking=tracking,
                       encoder=options.encoder if video else None, outputs=tuple(sorted(options.output_kinds)))


def options_key(options: BatchOptions) -> str:
    """The manifest's hash of what shapes the outputs."""
    return options_hash(output_shape(options))


class ItemProcessor:
    """The per-input unit: processes inputs, one pipeline each, any number at once from different threads,
    and says what the manifest should record for each; it writes no manifest itself, so that it runs the
    same in a thread pool, a worker process or a Ray actor. `control` stops every input it is running."""

    def __init__(self, options: BatchOptions, engine_for_stream: EngineProvider, open_source: SourceOpener,
                 control: RunControl) -> None:
        self.options = options
        self.engine_for_stream = engine_for_stream
        self.open_sinks = options.sink_factory()
        self.open_source = open_source
        self.control = control
        self.options_key = options_key(options)
        self._active: dict[str, RunControl] = {}
        self._lock = threading.Lock()

    def process(self, item: BatchItem) -> tuple[ItemResult, ManifestEntry | None]:
        """The input's result, and its manifest entry (None when it was interrupted: a rerun redoes it)."""
        key = item.relative.as_posix()
        if self.control.stopping:
            return ItemResult(key, "interrupted"), None
        outputs = item.outputs(self.options.output_dir, self.options.output_kinds)
        relative_outputs = [path.relative_to(self.options.output_dir).as_posix() for path in outputs.values()]
        item_control = RunControl()
        with self._lock:
            self._active[key] = item_control
        try:
            stamp = fingerprint(item.path) if item.path.exists() else {}
            stats, decoder = process_item(item, OutputPlan(**outputs), self.engine_for_stream(), self.open_source,
                                          self.open_sinks, self.options.pipeline, item_control)
        except Exception as error:  # noqa: BLE001 - one input's failure must not stop the batch
            if self.control.stopping:
                return ItemResult(key, "interrupted", error=describe_error(self.control.error)), None
            result = ItemResult(key, "failed", error=describe_error(error).removeprefix(f"{item.path}: "))
            return result, ManifestEntry("failed", stamp, self.options_key, [], error=result.error)
        finally:
            with self._lock:
                self._active.pop(key, None)
        result = ItemResult(key, "done", frames=stats.frames, fps=round(stats.fps, 2), wall_s=round(stats.wall_s, 3),
                            skipped_packets=stats.skipped_packets, outputs=relative_outputs, decoder=decoder)
        return result, ManifestEntry("done", stamp, self.options_key, relative_outputs, frames=result.frames,
                                     fps=result.fps, wall_s=result.wall_s, skipped_packets=result.skipped_packets)

    def stop_active(self) -> None:
        """Pass the batch's stop on to every running input."""
        with self._lock:
            running = list(self._active.values())
        for item_control in running:
            item_control.fail(self.control.error or Interrupted(signal.SIGINT))


class BatchLedger:
    """The manifest side of a batch, kept by the one process that owns the manifest: which inputs an
    earlier run did (skipped now), and the results of the others as they come in, in input order."""

    def __init__(self, items: list[BatchItem], options: BatchOptions, manifest: Manifest | None = None,
                 on_result: Callable[[ItemResult], None] | None = None) -> None:
        options.output_dir.mkdir(parents=True, exist_ok=True)
        self.items = items
        self.options = options
        self.manifest = manifest or Manifest(options.output_dir)
        self.on_result = on_result or (lambda result: None)
        self._key = options_key(options)
        self._results: list[ItemResult | None] = [self._skipped(item) for item in items]
        for result in self._results:
            if result is not None:
                self.on_result(result)

    def pending(self) -> list[int]:
        """Indices of the inputs to process."""
        return [index for index, result in enumerate(self._results) if result is None]

    def _skipped(self, item: BatchItem) -> ItemResult | None:
        key = item.relative.as_posix()
        try:
            stamp = fingerprint(item.path)
        except OSError:
            return None  # processing it reports the problem
        if self.options.redo or not self.manifest.is_done(key, stamp, self._key):
            return None
        entry = self.manifest.get(key)
        return ItemResult(key, "skipped", frames=entry.frames, fps=entry.fps, wall_s=entry.wall_s,
                          skipped_packets=entry.skipped_packets, outputs=entry.outputs)

    def record(self, index: int, result: ItemResult, entry: ManifestEntry | None) -> None:
        if entry is not None:
            self.manifest.record(result.input, entry)
        self._results[index] = result
        self.on_result(result)

    def fail(self, index: int, error: str) -> None:
        """Record input `index` failed by something outside its pipeline (its process died)."""
        item = self.items[index]
        try:
            stamp = fingerprint(item.path)
        except OSError:
            stamp = {}
        self.record(index, ItemResult(item.relative.as_posix(), "failed", error=error),
                    ManifestEntry("failed", stamp, self._key, [], error=error))

    def summary(self, wall_s: float, interrupted: bool, engines: list[dict[str, Any]] | None = None) -> BatchSummary:
        """Inputs without a result (never started, or lost to a stop) count as interrupted."""
        items = [result or ItemResult(item.relative.as_posix(), "interrupted")
                 for item, result in zip(self.items, self._results)]
        return BatchSummary(items, wall_s, engines or [], interrupted=interrupted)


def run_batch(items: list[BatchItem], engine_for_stream: EngineProvider, options: BatchOptions,
              open_source: SourceOpener = VideoFileSource,
              control: RunControl | None = None,
              on_result: Callable[[ItemResult], None] | None = None) -> BatchSummary:
    """Process `items` (skipping those the manifest in `options.output_dir` shows done), `options.jobs`
    at a time, in this process; `engine_for_stream()` is called once per processed input and must be safe
    to use from that input's pipeline while the others run. `on_result` is called as each input finishes.
    `control.fail(...)` (e.g. a signal handler) stops the batch: running inputs stop, the rest are not
    started, and the summary says `interrupted`."""
    control = control or RunControl()
    ledger = BatchLedger(items, options, on_result=on_result)
    processor = ItemProcessor(options, engine_for_stream, open_source, control)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs),
                                               thread_name_prefix="effdet-batch") as pool:
        futures = {pool.submit(processor.process, items[index]): index for index in ledger.pending()}
        waiting = set(futures)
        while waiting:
            try:
                done, waiting = concurrent.futures.wait(waiting, timeout=POLL_S)
            except KeyboardInterrupt:  # no signal handler installed (library use)
                control.fail(Interrupted(signal.SIGINT))
                done = set()
            if control.stopping:
                processor.stop_active()
            for future in done:
                ledger.record(futures[future], *future.result())
    return ledger.summary(time.perf_counter() - started, control.stopping)
