"""Live sources with latest-frame semantics: a V4L2 camera, a network stream, or a file played in real time.

A reader thread of its own decodes continuously (a live source cannot be paused) and keeps only the newest
frame in a one-slot mailbox; a frame replaced before the pipeline took it is counted as dropped. The
pipeline takes a frame only when fewer than `depth` frames are between the source and the sinks (a credit
is returned by `frame_done`), so no queue inside the pipeline can fill up with stale frames: latency stays
bounded by the pipeline's own work instead of growing with the backlog.

Every frame carries its capture time (time.monotonic when it was decoded, or when it was due for a file
played in real time); its pts is that time since the start, in milliseconds, so recordings keep real
timing across drops and reconnects.
"""
from __future__ import annotations

import dataclasses
import re
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av

from effdet_video.core.control import POLL_S
from effdet_video.core.frames import FrameRecord
from effdet_video.errors import UserError
from effdet_video.sources.base import FrameSource
from effdet_video.sources.source import VideoInfo, display_rotation, frame_colour

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
LIVE_TIME_BASE = Fraction(1, 1000)
_V4L2_DEVICE = re.compile(r"^/dev/video\d+$")


@dataclasses.dataclass(frozen=True)
class LiveLocation:
    """Where frames come from. kind: 'network', 'camera' (V4L2) or 'file'."""

    url: str
    kind: str
    format: str | None = None

    @property
    def network(self) -> bool:
        return self.kind == "network"


def parse_location(text: str) -> LiveLocation:
    """Classify SOURCE; an unknown scheme or a missing file is a UserError."""
    scheme = text.split("://", 1)[0].lower() if "://" in text else ""
    if scheme in NETWORK_SCHEMES:
        return LiveLocation(text, "network")
    if scheme:
        raise UserError(f"{text}: unsupported stream protocol {scheme!r} "
                        f"(expected one of {', '.join(NETWORK_SCHEMES)})")
    if _V4L2_DEVICE.match(text):
        if not Path(text).exists():
            raise UserError(f"{text}: no such camera (is it plugged in?)")
        return LiveLocation(text, "camera", "v4l2")
    path = Path(text)
    if not path.is_file():
        raise UserError(f"{text}: no such file, camera (/dev/videoN) or stream URL")
    return LiveLocation(str(path), "file")


@dataclasses.dataclass(frozen=True)
class LiveOptions:
    """realtime: play a file at its frame rate (required for files); loop: replay it at the end.
    reconnect: reopen a network source that fails or ends, waiting backoff_s * 2**attempt (at most
    backoff_cap_s) and giving up after `reconnect_max` consecutive failed attempts.
    timeout_s: how long opening or reading may wait for data. depth: frames in the pipeline at once."""

    realtime: bool = False
    loop: bool = False
    reconnect: bool = False
    reconnect_max: int = 10
    backoff_s: float = 0.5
    backoff_cap_s: float = 8.0
    timeout_s: float = 10.0
    depth: int = 1


class LatestFrame:
    """A one-slot mailbox: `put` replaces an unread item (counted in `overwritten`), `take` waits for a
    new one. `end` wakes the reader for good."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: tuple[av.VideoFrame, float] | None = None
        self._ended = False
        self.overwritten = 0

    def put(self, item: tuple[av.VideoFrame, float]) -> None:
        with self._cond:
            if self._item is not None:
                self.overwritten += 1
            self._item = item
            self._cond.notify_all()

    def restamp(self, captured: float) -> None:
        """Give the unread item, if any, a new capture time (a held file's first frame, once played)."""
        with self._cond:
            if self._item is not None:
                self._item = (self._item[0], captured)

    def end(self) -> None:
        with self._cond:
            self._ended = True
            self._cond.notify_all()

    def wait(self, take: bool) -> tuple[av.VideoFrame, float] | None:
        """The newest item (removed if `take`) once there is one; None once ended and empty."""
        with self._cond:
            while not self._cond.wait_for(lambda: self._item is not None or self._ended, timeout=POLL_S):
                pass
            item = self._item
            if take:
                self._item = None
            return item


class SourceEnded(Exception):
    """The stream ended or failed; its message says which, for the user."""


class _RealtimeClock:
    """When each frame of a file is due, so that it arrives like a camera's; a replayed file continues one
    frame period after the previous pass's last frame."""

    def __init__(self) -> None:
        self._origin: float | None = None
        self._last_due: float | None = None
        self._period = 1 / 30

    def new_pass(self) -> None:
        self._origin = None

    def restart(self) -> None:
        """Start over from now: the next frame is due at once, those after it at their pace."""
        self._origin = self._last_due = None

    def due(self, seconds: float) -> float:
        if self._origin is None:
            start = time.monotonic() if self._last_due is None else self._last_due + self._period
            self._origin = start - seconds
        due = self._origin + seconds
        if self._last_due is not None and due > self._last_due:
            self._period = due - self._last_due
        self._last_due = due
        return due


class LiveSource(FrameSource):
    """Frames of a live location, only ever the newest; see the module docstring.

    `start` reads the first frame (the sinks are made for its size); `begin` says the engine is ready.
    Until then a file played in real time waits after its first frame, and its clock starts at `begin`;
    a camera or stream cannot wait, and the frames it replaces meanwhile are counted apart, in
    `warmup_dropped`, from those dropped under load (`dropped`).
    `report` receives one-line status messages for the user (source lost, reconnecting, ended)."""

    def __init__(self, location: LiveLocation, options: LiveOptions = LiveOptions(),
                 report: Callable[[str], None] = lambda message: None) -> None:
        if location.kind == "file" and not options.realtime:
            raise UserError(f"{location.url} is a file: play it in real time (realtime on) to use it as a live "
                            "source, or process it as a video file to detect every frame")
        self.location, self.options, self.report = location, options, report
        self.skipped_packets = 0
        self.decoded = 0
        self._decoded_since_open = 0
        self.state = "connecting"
        self.end_message: str | None = None
        self.info: VideoInfo | None = None
        self._mailbox = LatestFrame()
        self._stop = threading.Event()
        self._credits = threading.Semaphore(max(1, options.depth))
        self._captured: dict[int, float] = {}
        self._origin = 0.0
        self._clock = _RealtimeClock()
        self._begun = threading.Event()
        self.warmup_dropped = 0
        self._reader = threading.Thread(target=self._read, name="effdet-live-reader", daemon=True)

    @property
    def dropped(self) -> int:  # type: ignore[override]
        """Frames dropped since `begin` because the pipeline was busy."""
        return self._mailbox.overwritten - self.warmup_dropped

    def begin(self) -> None:
        """The engine is ready: a held file plays on from now (its first frame counts as captured now),
        and what a live source dropped until now is warm-up."""
        now = time.monotonic()
        if self._holds_until_begun:
            self._clock.restart()
            self._mailbox.restamp(now)
            self._origin = now
        self.warmup_dropped = self._mailbox.overwritten
        self._begun.set()

    @property
    def _holds_until_begun(self) -> bool:
        return self.location.kind == "file"

    def start(self) -> VideoInfo | None:
        """Start reading and wait for the first frame (its size is what the sinks are made for); None if
        `stop` came first. A source that cannot be read is a UserError."""
        self._reader.start()
        first = self._mailbox.wait(take=False)
        if first is None and self._stop.is_set():
            return None
        if first is None:
            raise UserError(f"cannot read {self.location.url}: {self.end_message or 'stopped'}")
        picture, self._origin = first
        self.info = VideoInfo(path=Path(self.location.url), width=picture.width, height=picture.height,
                              time_base=LIVE_TIME_BASE, rate=Fraction(30), rotation=display_rotation(picture),
                              codec="", pix_fmt=picture.format.name, colour=frame_colour(picture))
        return self.info

    def stop(self) -> None:
        """End the stream from outside (Ctrl-C, --duration): `frames` returns, the reader exits."""
        self._stop.set()
        self._mailbox.end()

    def frames(self) -> Iterator[FrameRecord]:
        if self.info is None:
            raise RuntimeError("LiveSource.start() must be called before frames()")
        index, last_pts = 0, -1
        while self._acquire_credit():
            item = self._mailbox.wait(take=True)
            if item is None or self._stop.is_set():
                return
            picture, captured = item
            self._captured[index] = captured
            last_pts = max(last_pts + 1, round((captured - self._origin) / LIVE_TIME_BASE))
            yield FrameRecord(index=index, pts=last_pts, time_base=LIVE_TIME_BASE, rotation=self.info.rotation,
                              picture=picture)
            index += 1

    def _acquire_credit(self) -> bool:
        while not self._stop.is_set():
            if self._credits.acquire(timeout=POLL_S):
                return True
        return False

    def frame_done(self, index: int) -> float:
        """A frame left the pipeline: return its credit and its capture time (time.monotonic)."""
        self._credits.release()
        return self._captured.pop(index)

    def close(self) -> None:
        self.stop()
        self._reader.join(timeout=1.0)

    # --- the reader thread ---

    def _read(self) -> None:
        failures = 0
        try:
            while not self._stop.is_set():
                try:
                    self._read_once()
                    reason = "stream ended"
                    if self.location.kind == "file" and self.options.loop:
                        self._clock.new_pass()
                        continue
                except SourceEnded as error:
                    reason = str(error)
                if self._stop.is_set():
                    return
                if self._decoded_since_open:
                    failures = 0
                if not self._retry(reason, failures):
                    return
                failures += 1
        finally:
            self._mailbox.end()

    def _retry(self, reason: str, failures: int) -> bool:
        """Wait before reconnecting, or say why the source is finished and return False."""
        if not (self.location.network and self.options.reconnect):
            ended = reason == "stream ended"
            self._finish("ended" if ended else "lost", "source ended" if ended else f"source lost: {reason}")
            return False
        if failures >= self.options.reconnect_max:
            self._finish("lost", f"source lost: {reason}; gave up after {failures} reconnect attempts")
            return False
        delay = min(self.options.backoff_cap_s, self.options.backoff_s * 2 ** failures)
        self.state = "reconnecting"
        self.report(f"source lost: {reason}; reconnecting in {delay:.1f} s "
                    f"(attempt {failures + 1}/{self.options.reconnect_max})")
        return not self._stop.wait(delay)

    def _finish(self, state: str, message: str) -> None:
        self.state, self.end_message = state, message
        self.report(message)

    def _open(self) -> av.container.InputContainer:
        options = {"fflags": "nobuffer"} if self.location.kind != "file" else {}
        if self.location.url.lower().startswith("udp://"):
            options["overrun_nonfatal"] = "1"
        if self.location.url.lower().startswith("rtsp"):
            options["rtsp_transport"] = "tcp"
        try:
            return av.open(self.location.url, format=self.location.format, options=options,
                           timeout=self.options.timeout_s)
        except (av.error.FFmpegError, OSError) as error:
            raise SourceEnded(self._describe(error)) from None

    def _read_once(self) -> None:
        """Open, decode until the stream ends (returns) or fails (SourceEnded)."""
        self._decoded_since_open = 0
        container = self._open()
        try:
            if not container.streams.video:
                raise SourceEnded("no video stream")
            stream = container.streams.video[0]
            # Frame threading holds frames back (one per thread); slices do not add latency.
            stream.codec_context.thread_type = "AUTO" if self.location.kind == "file" else "SLICE"
            self.state = "live"
            for packet in container.demux(stream):
                if self._stop.is_set():
                    return
                try:
                    pictures = packet.decode()
                except av.error.InvalidDataError:
                    self.skipped_packets += 1
                    continue
                for picture in pictures:
                    self._publish(picture)
        except (av.error.FFmpegError, OSError) as error:
            raise SourceEnded(self._describe(error)) from None
        finally:
            container.close()

    def _publish(self, picture: av.VideoFrame) -> None:
        if self._holds_until_begun and self.decoded and not self._begun.is_set():
            while not self._begun.wait(POLL_S):
                if self._stop.is_set():
                    return
        if self.options.realtime and picture.time is not None:
            if self._stop.wait(max(0.0, self._clock.due(picture.time) - time.monotonic())):
                return
        if self.info is not None and (picture.width, picture.height) != (self.info.width, self.info.height):
            # A reconnected stream may come back at another size; the sinks are made for the first one.
            picture = picture.reformat(width=self.info.width, height=self.info.height)
        self._mailbox.put((picture, time.monotonic()))
        self.decoded += 1
        self._decoded_since_open += 1

    def _describe(self, error: BaseException) -> str:
        if isinstance(error, av.error.ExitError):  # FFmpeg's interrupt callback: our timeout expired
            return f"no data for {self.options.timeout_s:g} s"
        return getattr(error, "strerror", None) or str(error) or type(error).__name__
