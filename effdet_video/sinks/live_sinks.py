"""Sinks particular to live runs: latency measurement (which also paces the live source), recordings kept
on any stop, detections on stdout, and encoding to a network URL (RTMP, RTSP, UDP, ...)."""
from __future__ import annotations

import json
import sys
import threading
import time
from typing import Sequence

import av
import numpy as np

from effdet_video.core.frames import FrameRecord
from effdet_video.core.latency import LatencyRecorder
from effdet_video.errors import UserError
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.detection_sinks import frame_object
from effdet_video.sinks.encoding import encoder_pixel_format, rgb_to_picture
from effdet_video.sources.live_source import LIVE_TIME_BASE, LiveSource
from effdet_video.sources.source import VideoInfo
from effdet_video.stages.prepare import to_coded_orientation

STREAM_FORMATS = {"rtmp": "flv", "rtmps": "flv", "rtsp": "rtsp", "rtsps": "rtsp", "udp": "mpegts",
                  "tcp": "mpegts", "srt": "mpegts", "http": "mpegts", "https": "mpegts", "rtp": "rtp_mpegts"}


class LatencySink(FrameSink):
    """Must come last: a frame is 'out' once every other sink wrote it. Returns the frame's credit to the
    source, so the next (newest) frame enters the pipeline. It asks for the annotated image so that what
    is measured always includes drawing the boxes, even in a run whose only output is the report."""

    needs_image = True

    def __init__(self, source: LiveSource, recorder: LatencyRecorder) -> None:
        self.source, self.recorder = source, recorder

    def write(self, record: FrameRecord) -> None:
        self.recorder.add(self.source.frame_done(record.index), time.monotonic())

    def finish(self) -> None:
        """Nothing to publish."""

    def abort(self) -> None:
        """Nothing to remove."""


class KeepOnAbort(FrameSink):
    """A live recording is finalised whatever stops the run (Ctrl-C, an error): what was recorded until
    then is the user's data. `abort` may come from another thread while the sink thread is writing, so
    the calls are serialised and nothing is written once finalised."""

    def __init__(self, sink: FrameSink) -> None:
        self.sink = sink
        self.needs_image, self.needs_canvas = sink.needs_image, sink.needs_canvas
        self._lock = threading.Lock()
        self._closed = False

    def render_group(self, records: Sequence[FrameRecord]) -> None:
        self.sink.render_group(records)

    def render(self, record: FrameRecord) -> None:
        self.sink.render(record)

    def write(self, record: FrameRecord) -> None:
        with self._lock:
            if not self._closed:
                self.sink.write(record)

    def finish(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self.sink.finish()

    def abort(self) -> None:
        try:
            self.finish()
        except Exception:  # noqa: BLE001 - the run's first error is what gets reported
            self.sink.abort()


class StdoutJsonLinesSink(FrameSink):
    """One JSON object per frame on stdout, flushed at once, for a consumer reading the live run."""

    def __init__(self, labels: dict[int, str] | None = None) -> None:
        self._labels = labels

    def write(self, record: FrameRecord) -> None:
        sys.stdout.write(json.dumps(frame_object(record, self._labels)) + "\n")
        sys.stdout.flush()

    def finish(self) -> None:
        """Nothing to publish."""

    def abort(self) -> None:
        """Nothing to remove."""


def stream_format(url: str, format_name: str | None) -> str:
    if format_name:
        return format_name
    scheme = url.split("://", 1)[0].lower()
    if scheme not in STREAM_FORMATS:
        raise UserError(f"{url}: unsupported output protocol {scheme!r} "
                        f"(expected one of {', '.join(STREAM_FORMATS)})")
    return STREAM_FORMATS[scheme]


class StreamOutputSink(FrameSink):
    """Annotated frames encoded for low latency (x264 zerolatency) and sent to a URL as they come."""

    needs_image = True

    def __init__(self, url: str, info: VideoInfo, format_name: str | None = None, timeout_s: float = 10.0) -> None:
        self.url = url
        try:
            self._output = av.open(url, mode="w", format=stream_format(url, format_name), timeout=timeout_s)
        except (av.error.FFmpegError, OSError) as error:
            raise UserError(f"{url}: cannot open the output stream ({getattr(error, 'strerror', None) or error})"
                            ) from None
        try:
            self._video = self._output.add_stream("libx264", rate=30,
                                                  options={"preset": "veryfast", "tune": "zerolatency"})
            self._video.width, self._video.height = info.width, info.height
            self._video.pix_fmt = encoder_pixel_format("libx264", info.width, info.height)
            self._video.time_base = LIVE_TIME_BASE
            self._video.codec_context.time_base = LIVE_TIME_BASE
            self._output.start_encoding()
        except BaseException:
            self._output.close()
            raise
        self._rotation = info.rotation

    def render(self, record: FrameRecord) -> None:
        image = np.ascontiguousarray(to_coded_orientation(record.image, self._rotation))
        record.encoded["stream"] = rgb_to_picture(image, self._video.pix_fmt)

    def write(self, record: FrameRecord) -> None:
        picture = record.encoded.pop("stream")
        picture.pts, picture.time_base = record.pts, record.time_base
        for packet in self._video.encode(picture):
            self._output.mux(packet)

    def finish(self) -> None:
        for packet in self._video.encode(None):
            self._output.mux(packet)
        self._output.close()

    def abort(self) -> None:
        try:
            self._output.close()
        except Exception:  # noqa: BLE001 - a broken connection has nothing left to close cleanly
            pass
