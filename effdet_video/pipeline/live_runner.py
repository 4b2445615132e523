"""`run_live`: a live source through the engine into live outputs, with latency measured per frame.

The pipeline runs at its lowest-latency settings: one prepare and one annotate worker, each engine batch
collected as soon as it is submitted, and at most `LiveOptions.depth` frames inside at once (the source
hands out the newest frame when a credit comes back, see sources/live_source.py).

How a live run ends: the source ends or is lost (outputs finished normally), --duration elapses (the
same), or a signal (Ctrl-C, SIGTERM): the pipeline stops at once, frames in flight are abandoned and the
recording and JSON Lines outputs are finalised with what they hold - a valid, shorter file.
"""
from __future__ import annotations

import dataclasses
import json
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from effdet_video.core.control import Interrupted, RunControl, stop_on_signals
from effdet_video.core.latency import LatencyRecorder
from effdet_video.engine.base import Engine, InferenceBatch
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.factory import EncoderSettings, OutputPlan, SinkFactory, SinkOpener, open_in_order
from effdet_video.sinks.live_sinks import KeepOnAbort, LatencySink, StdoutJsonLinesSink, StreamOutputSink
from effdet_video.sinks.output_file import check_output_path
from effdet_video.sinks.preview import PreviewServer, PreviewSink
from effdet_video.sources.live_source import LiveLocation, LiveOptions, LiveSource
from effdet_video.sources.source import VideoInfo
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import TrackingOptions

STOP_TIMEOUT_S = 0.3  # after a signal, how long to wait for a stage busy in the engine before leaving it


@dataclasses.dataclass(frozen=True)
class LiveOutputs:
    """output: a video file (a finite recording) or a URL; jsonl: a path or '-' for stdout; preview: serve
    the preview page on preview_host:preview_port (0 picks a free port); stats_json: the final report;
    tracks_json: with tracking, the per-track summary."""

    output: str | None = None
    output_format: str | None = None
    jsonl: str | None = None
    preview: bool = False
    preview_host: str = "127.0.0.1"
    preview_port: int = 8080
    stats_json: Path | None = None
    tracks_json: Path | None = None
    overwrite: bool = False

    def files(self) -> OutputPlan:
        """The outputs written to files (not a URL, not stdout)."""
        output = self.output if self.output and "://" not in self.output else None
        jsonl = self.jsonl if self.jsonl and self.jsonl != "-" else None
        return OutputPlan(video=Path(output) if output else None, jsonl=Path(jsonl) if jsonl else None,
                          tracks=self.tracks_json)

    def check(self, location: LiveLocation) -> None:
        """Refuse bad output paths before anything is opened."""
        inputs = (Path(location.url),) if location.kind == "file" else ()
        for path in (self.output, self.jsonl, self.tracks_json):
            if path and path != "-" and "://" not in str(path):
                check_output_path(Path(path), inputs, self.overwrite)


def _sinks(outputs: LiveOutputs, info: VideoInfo, labels: dict[int, str] | None) -> list[FrameSink]:
    """The recording (file or URL) and the detections; files are kept whatever stops the run (but
    dropped if a later sink cannot be opened: then nothing was recorded)."""
    streamed: list[SinkOpener] = []
    if outputs.output and "://" in outputs.output:
        streamed.append(lambda: StreamOutputSink(outputs.output, info, outputs.output_format))
    if outputs.jsonl == "-":
        streamed.append(lambda: StdoutJsonLinesSink(labels))
    files = SinkFactory(EncoderSettings(audio=False), labels).openers(outputs.files(), info)
    sinks = open_in_order([*streamed, *files])
    return [*sinks[:len(streamed)], *(KeepOnAbort(sink) for sink in sinks[len(streamed):])]


def warm_up(engine: Engine) -> None:
    """One batch of blank frames through the engine, so that its first-call costs (allocations, kernel
    selection: seconds on a CPU) are paid before the source starts, not by the first frames."""
    height, width = engine.image_size
    size = engine.batch_size
    batch = InferenceBatch(np.zeros((size, height, width, 3), np.uint8), np.full((size, 2), (height, width), np.int32),
                           np.ones(size, np.float32), size)
    engine.submit(batch).result()


def run_live(location: LiveLocation, options: LiveOptions, engine_factory: Callable[[], Engine],
             outputs: LiveOutputs, detection_filter: DetectionFilter = DetectionFilter(),
             labels: dict[int, str] | None = None, duration_s: float | None = None,
             report: Callable[[str], None] = lambda message: None,
             tracking: TrackingOptions | None = None) -> dict[str, Any]:
    """Run until the source ends, `duration_s` passes or a signal comes; return the final report (also
    written to `outputs.stats_json`): latency p50/p99/max and drift, frames, dropped, how it ended.
    `tracking`: one tracker for the whole session, so a reconnect within its patience keeps identities."""
    outputs.check(location)
    control = RunControl()
    source = LiveSource(location, options, report)
    recorder = LatencyRecorder()
    preview: PreviewServer | None = None
    stopped_by: list[str] = []

    def on_signal(signum: int) -> None:
        stopped_by.append(signal.Signals(signum).name)
        source.stop()

    def live_stats() -> dict[str, Any]:
        return {"source": {"url": location.url, "state": source.state, "message": source.end_message,
                           "decoded": source.decoded, "dropped": source.dropped},
                "recent": recorder.recent()}

    timer = threading.Timer(duration_s, source.stop) if duration_s else None
    try:
        with stop_on_signals(control, on_signal):
            info = source.start()
            if info is not None:
                with engine_factory() as engine:
                    warm_up(engine)  # before any output is opened, so that a failure leaves none behind
                    if outputs.preview:
                        preview = PreviewServer(live_stats, outputs.preview_host, outputs.preview_port)
                        report(f"preview: {preview.url}")
                    sinks = _sinks(outputs, info, labels)
                    if preview:
                        sinks.append(PreviewSink(preview))
                    sinks.append(LatencySink(source, recorder))
                    source.begin()
                    recorder.restart()
                    if timer:
                        timer.start()
                    pipeline = PipelineOptions(detection_filter=detection_filter, labels=labels,
                                               prepare_workers=1, annotate_workers=1, in_flight=0,
                                               stop_timeout_s=STOP_TIMEOUT_S, tracking=tracking)
                    try:
                        run_pipeline(source, engine, sinks, pipeline, control)
                    except Interrupted:
                        pass
    finally:
        if timer:
            timer.cancel()
        source.close()
        if preview:
            preview.close()
    if stopped_by:
        ended = f"stopped by {stopped_by[0]}"
    elif source.end_message is None:
        ended = f"stopped after {duration_s:g} s"
    else:
        ended = source.end_message
    result = {"source": location.url, "ended": ended, "decoded": source.decoded, "dropped": source.dropped,
              "dropped_warmup": source.warmup_dropped,
              "skipped_packets": source.skipped_packets, "latency": recorder.summary()}
    if outputs.stats_json:
        outputs.stats_json.write_text(json.dumps(result, indent=1) + "\n")
    return result
