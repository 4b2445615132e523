"""The one place where a run's file outputs become sinks: which outputs (`OutputPlan`), how the video is
encoded (`EncoderSettings`), and `open_in_order`, which opens sinks one after another and, when one
cannot be opened, aborts those already open (their temporary files removed) before re-raising, so that
a failed start never leaves a partial output behind. `run`, `batch`, `live`, the demo and the benchmarks
all open their sinks through here."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterable

from effdet_video.sinks.audio_fit import check_audio_fits
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.detection_sinks import CocoResultsSink, JsonLinesSink, TracksJsonSink
from effdet_video.sinks.image_sink import ImageFileSink
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoInfo

SinkOpener = Callable[[], FrameSink]


@dataclasses.dataclass(frozen=True)
class EncoderSettings:
    """How the annotated video is encoded. codec: None picks it from the output's extension; audio: copy
    the input's audio streams untouched (checked to fit the container before anything is opened)."""

    codec: str | None = None
    crf: int = 20
    preset: str = "veryfast"
    audio: bool = True


@dataclasses.dataclass(frozen=True)
class OutputPlan:
    """Which files a run writes, each None when not wanted: the annotated copy (an image for a still
    image input), detections as JSON Lines, as COCO results, and the per-track summary."""

    video: Path | None = None
    jsonl: Path | None = None
    coco: Path | None = None
    tracks: Path | None = None

    def paths(self) -> dict[str, Path]:
        """The planned outputs by kind (the field names), in the order their sinks are opened."""
        return {field.name: path for field in dataclasses.fields(self)
                if (path := getattr(self, field.name)) is not None}


def open_in_order(openers: Iterable[SinkOpener]) -> list[FrameSink]:
    """Call each opener in turn; if one raises, abort every sink opened before it, then re-raise."""
    sinks: list[FrameSink] = []
    try:
        for opener in openers:
            sinks.append(opener())
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return sinks


@dataclasses.dataclass(frozen=True)
class SinkFactory:
    """Opens the sinks of an `OutputPlan` for one input; `labels` name the classes in the outputs. Plain
    settings, so it pickles into worker processes and Ray actors."""

    encoder: EncoderSettings = EncoderSettings()
    labels: dict[int, str] | None = None

    def openers(self, plan: OutputPlan, info: VideoInfo) -> list[SinkOpener]:
        """One opener per planned output, for callers that open further sinks of their own alongside."""
        return [lambda kind=kind, path=path: self._open(kind, path, info) for kind, path in plan.paths().items()]

    def __call__(self, plan: OutputPlan, info: VideoInfo) -> list[FrameSink]:
        return open_in_order(self.openers(plan, info))

    def _open(self, kind: str, path: Path, info: VideoInfo) -> FrameSink:
        if kind == "video" and info.still_image:
            return ImageFileSink(path)
        if kind == "video":
            if self.encoder.audio:
                check_audio_fits(info.path, path)
            return VideoFileSink(path, info, codec=self.encoder.codec, crf=self.encoder.crf,
                                 preset=self.encoder.preset, audio=self.encoder.audio, labels=self.labels)
        if kind == "jsonl":
            return JsonLinesSink(path, self.labels)
        if kind == "tracks":
            return TracksJsonSink(path, self.labels)
        return CocoResultsSink(path)
