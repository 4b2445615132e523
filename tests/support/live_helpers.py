"""Shared by the live tests: a short-GOP MPEG-TS clip (a receiver joining mid-stream starts within a third
of a second), the loopback streamer process, and a reader of the `live` command's stderr."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from fractions import Fraction
from pathlib import Path

import av

SUPPORT = Path(__file__).resolve().parent
REPO = SUPPORT.parents[1]
CLIP_SIZE = (320, 180)


def make_ts_clip(source: Path, target: Path) -> Path:
    """`source` scaled to CLIP_SIZE, H.264 with a keyframe every 10 frames, in MPEG-TS."""
    with av.open(str(source)) as reader, av.open(str(target), "w", format="mpegts") as writer:
        stream = writer.add_stream("libx264", rate=30, options={"g": "10", "bf": "0", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = *CLIP_SIZE, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 30)
        for index, frame in enumerate(reader.decode(video=0)):
            small = frame.reformat(width=CLIP_SIZE[0], height=CLIP_SIZE[1], format="yuv420p")
            small.pts, small.time_base = index, Fraction(1, 30)
            for packet in stream.encode(small):
                writer.mux(packet)
        for packet in stream.encode(None):
            writer.mux(packet)
    return target


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_streamer(clip: Path, port: int, seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SUPPORT / "live_streamer.py"), str(clip), str(port), str(seconds)],
                            stdout=subprocess.DEVNULL)


class LiveProcess:
    """`effdet-video live ...` in a subprocess; stderr lines collected by a thread as they come."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        self.process = subprocess.Popen([sys.executable, "-m", "effdet_video.cli", "live", *args], env=env,
                                        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if line.startswith(prefix):
                    return line
            if self.process.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.05)
        raise AssertionError(f"no line starting {prefix!r}; stderr so far: {self.lines}")

    def preview_url(self, timeout: float = 60.0) -> str:
        return self.wait_for_line("effdet-video live: preview: ", timeout).rsplit(" ", 1)[1]

    def finish(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        self._reader.join(2)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
