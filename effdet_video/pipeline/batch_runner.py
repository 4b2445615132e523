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
import time
from pathlib import Path
from typing import Any, Callable

from effdet_video.engine.base import Engine
from effdet_video.errors import UserError
from effdet_video.pipeline.batch_inputs import BatchItem
from effdet_video.pipeline.batch_manifest import Manifest, ManifestEntry, fingerprint, options_hash
from effdet_video.pipeline.control import POLL_S, Interrupted, RunControl
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.pipeline.stats import RunStats
from effdet_video.stages.base import FrameSink, FrameSource
from effdet_video.stages.source import VideoFileSource, VideoInfo


# The source must have `info: VideoInfo`, and may have `decoder_used`, like VideoFileSource.
SourceOpener = Callable[[Path], FrameSource]
SinkOpener = Callable[[dict[str, Path], VideoInfo], list[FrameSink]]
EngineProvider = Callable[[], Engine]


@dataclasses.dataclass(frozen=True)
class BatchOptions:
    """output_kinds: a subset of ('video', 'jsonl', 'coco'); jobs: inputs processed at the same time;
    output_options: everything that shapes the outputs (model, thresholds, encoder...), hashed into the
    manifest so that changing it redoes the inputs; redo: ignore the manifest."""

    output_dir: Path
    output_kinds: tuple[str, ...]
    jobs: int = 4
    pipeline: PipelineOptions = PipelineOptions()
    output_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    redo: bool = False


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
    """Per-input results in input order; wall_s of the whole batch; engines: per-device statistics."""

    items: list[ItemResult]
    wall_s: float
    engines: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    interrupted: bool = False

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


def process_item(item: BatchItem, outputs: dict[str, Path], engine: Engine, open_source: SourceOpener,
                 open_sinks: SinkOpener, options: PipelineOptions,
                 control: RunControl) -> tuple[RunStats, str | None]:
    """One input through its own pipeline into `outputs` (published only when complete); its run's
    statistics and the decoder that decoded it."""
    for output in outputs.values():
        output.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_partials(output)
    source = open_source(item.path)
    try:
        sinks = open_sinks(outputs, source.info)
        return run_pipeline(source, engine, sinks, options, control), getattr(source, "decoder_used", None)
    finally:
        source.close()


class _Batch:
    """The state of one `run_batch` call shared by its worker threads."""

    def __init__(self, options: BatchOptions, engine_for_stream: EngineProvider, open_sinks: SinkOpener,
                 open_source: SourceOpener, control: RunControl,
                 on_result: Callable[[ItemResult], None] | None) -> None:
        self.options = options
        self.engine_for_stream = engine_for_stream
        self.open_sinks = open_sinks
        self.open_source = open_source
        self.control = control
        self.on_result = on_result or (lambda result: None)
        self.manifest = Manifest(options.output_dir)
        self.options_key = options_hash({**options.output_options, "outputs": sorted(options.output_kinds)})
        self.active: dict[str, RunControl] = {}

    def skip_if_done(self, item: BatchItem) -> ItemResult | None:
        key = item.relative.as_posix()
        try:
            stamp = fingerprint(item.path)
        except OSError:
            return None  # processing it reports the problem
        if self.options.redo or not self.manifest.is_done(key, stamp, self.options_key):
            return None
        entry = self.manifest.get(key)
        return ItemResult(key, "skipped", frames=entry.frames, fps=entry.fps, wall_s=entry.wall_s,
                          skipped_packets=entry.skipped_packets, outputs=entry.outputs)

    def process(self, item: BatchItem) -> ItemResult:
        key = item.relative.as_posix()
        if self.control.stopping:
            return ItemResult(key, "interrupted")
        outputs = item.outputs(self.options.output_dir, self.options.output_kinds)
        relative_outputs = [path.relative_to(self.options.output_dir).as_posix() for path in outputs.values()]
        item_control = RunControl()
        self.active[key] = item_control
        try:
            stamp = fingerprint(item.path) if item.path.exists() else {}
            stats, decoder = process_item(item, outputs, self.engine_for_stream(), self.open_source,
                                          self.open_sinks, self.options.pipeline, item_control)
        except Exception as error:  # noqa: BLE001 - one input's failure must not stop the batch
            if self.control.stopping:
                return self._report(ItemResult(key, "interrupted", error=describe_error(self.control.error)))
            result = ItemResult(key, "failed", error=describe_error(error).removeprefix(f"{item.path}: "))
            self.manifest.record(key, ManifestEntry("failed", stamp, self.options_key, [], error=result.error))
            return self._report(result)
        finally:
            self.active.pop(key, None)
        result = ItemResult(key, "done", frames=stats.frames, fps=round(stats.fps, 2), wall_s=round(stats.wall_s, 3),
                            skipped_packets=stats.skipped_packets, outputs=relative_outputs, decoder=decoder)
        self.manifest.record(key, ManifestEntry("done", stamp, self.options_key, relative_outputs, frames=result.frames,
                                                fps=result.fps, wall_s=result.wall_s,
                                                skipped_packets=result.skipped_packets))
        return self._report(result)

    def _report(self, result: ItemResult) -> ItemResult:
        self.on_result(result)
        return result

    def stop_active(self) -> None:
        """Pass the batch's stop on to every running input."""
        for item_control in list(self.active.values()):
            item_control.fail(self.control.error or Interrupted(signal.SIGINT))


def run_batch(items: list[BatchItem], engine_for_stream: EngineProvider, options: BatchOptions,
              open_sinks: SinkOpener, open_source: SourceOpener = VideoFileSource,
              control: RunControl | None = None,
              on_result: Callable[[ItemResult], None] | None = None) -> BatchSummary:
    """Process `items` (skipping those the manifest in `options.output_dir` shows done), `options.jobs`
    at a time; `engine_for_stream()` is called once per processed input and must be safe to use from
    that input's pipeline while the others run. `on_result` is called as each input finishes.
    `control.fail(...)` (e.g. a signal handler) stops the batch: running inputs stop, the rest are not
    started, and the summary says `interrupted`."""
    control = control or RunControl()
    options.output_dir.mkdir(parents=True, exist_ok=True)
    batch = _Batch(options, engine_for_stream, open_sinks, open_source, control, on_result)
    results: list[ItemResult | None] = [batch.skip_if_done(item) for item in items]
    for result in results:
        if result is not None:
            batch.on_result(result)
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, options.jobs),
                                               thread_name_prefix="effdet-batch") as pool:
        futures = {pool.submit(batch.process, item): index
                   for index, item in enumerate(items) if results[index] is None}
        waiting = set(futures)
        while waiting:
            try:
                _, waiting = concurrent.futures.wait(waiting, timeout=POLL_S)
            except KeyboardInterrupt:  # no signal handler installed (library use)
                control.fail(Interrupted(signal.SIGINT))
            if control.stopping:
                batch.stop_active()
        for future, index in futures.items():
            results[index] = future.result()
    return BatchSummary([result for result in results if result is not None], time.perf_counter() - started,
                        interrupted=control.stopping)
