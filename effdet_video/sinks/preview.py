"""A local preview of a live run: an HTTP server (standard library) with a page showing the annotated
frames as MJPEG and live fps/latency figures.

    /             the page: <img src=/stream.mjpg> and figures polled from /stats.json
    /stream.mjpg  multipart/x-mixed-replace JPEG frames, the newest frame each time (slow viewers skip)
    /frame.jpg    the newest frame alone
    /stats.json   what `stats` returns

Frames are JPEG-encoded only while someone watches, so an unwatched preview costs nothing.
"""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any, Callable

import cv2

from effdet_video.core.frames import FrameRecord
from effdet_video.errors import UserError
from effdet_video.sinks.base import FrameSink

JPEG_QUALITY = 80
SNAPSHOT_INTEREST_S = 5.0  # after a /frame.jpg request, keep encoding this long

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>effdet-video live</title>
<style>body{margin:0;background:#111;color:#eee;font:14px sans-serif}
#stats{padding:6px 10px}img{display:block;max-width:100%}</style></head>
<body><div id="stats">connecting…</div><img id="video" src="/stream.mjpg" alt="live preview">
<script>
function ms(v){return v===null?"–":v.toFixed(1)+" ms"}
async function poll(){
  try{
    const s=await (await fetch("/stats.json",{cache:"no-store"})).json();
    document.getElementById("stats").textContent=
      `${s.source.state} · ${s.recent.fps.toFixed(1)} fps · latency p50 ${ms(s.recent.p50_ms)}`+
      ` · p99 ${ms(s.recent.p99_ms)} · frames ${s.recent.frames} · dropped ${s.source.dropped}`;
  }catch(e){document.getElementById("stats").textContent="preview server gone";}
}
poll();setInterval(poll,500);
</script></body></html>
"""


class PreviewServer:
    """Serves the page and the newest published JPEG on host:port (port 0 picks a free one)."""

    def __init__(self, stats: Callable[[], dict[str, Any]], host: str = "127.0.0.1", port: int = 0) -> None:
        self._stats = stats
        self._cond = threading.Condition()
        self._jpeg: bytes | None = None
        self._sequence = 0
        self._viewers = 0
        self._snapshot_at = float("-inf")
        self._closing = False
        try:
            self._server = http.server.ThreadingHTTPServer((host, port), self._handler_class())
        except OSError as error:
            raise UserError(f"preview: cannot listen on {host}:{port} ({error.strerror or error})") from None
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        name="effdet-preview", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def wanted(self) -> bool:
        """Whether anyone would see a new frame now."""
        return self._viewers > 0 or time.monotonic() - self._snapshot_at < SNAPSHOT_INTEREST_S

    def publish(self, jpeg: bytes) -> None:
        with self._cond:
            self._jpeg = jpeg
            self._sequence += 1
            self._cond.notify_all()

    def next_frame(self, after: int, timeout: float) -> tuple[bytes | None, int]:
        """The newest frame once its sequence number is past `after` (None on timeout or closing)."""
        with self._cond:
            self._cond.wait_for(lambda: self._sequence > after or self._closing, timeout)
            if self._closing or self._sequence <= after:
                return None, after
            return self._jpeg, self._sequence

    def close(self) -> None:
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[http.server.BaseHTTPRequestHandler]:
        preview = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
                """Requests are not worth a line on the user's terminal."""

            def do_GET(self) -> None:  # noqa: N802 - the base class's name
                route = self.path.split("?", 1)[0]
                if route == "/":
                    self._send(200, "text/html; charset=utf-8", PAGE.encode())
                elif route == "/stats.json":
                    self._send(200, "application/json", json.dumps(preview._stats()).encode())
                elif route == "/frame.jpg":
                    preview._snapshot_at = time.monotonic()
                    jpeg = preview._jpeg
                    if jpeg is None:
                        self._send(503, "text/plain", b"no frame yet, retry shortly\n")
                    else:
                        self._send(200, "image/jpeg", jpeg)
                elif route == "/stream.mjpg":
                    self._stream()
                else:
                    self._send(404, "text/plain", b"not found\n")

            def _send(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def _stream(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                with preview._cond:
                    preview._viewers += 1
                    sequence = preview._sequence - 1 if preview._jpeg is not None else preview._sequence
                try:
                    while not preview._closing:
                        jpeg, sequence = preview.next_frame(sequence, timeout=0.5)
                        if jpeg is None:
                            continue
                        self.wfile.write(b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n"
                                         % len(jpeg) + jpeg + b"\r\n")
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass
                finally:
                    with preview._cond:
                        preview._viewers -= 1

        return Handler


class PreviewSink(FrameSink):
    """Publishes each annotated frame to a PreviewServer as JPEG (encoded in the annotate pool)."""

    needs_image = True

    def __init__(self, server: PreviewServer) -> None:
        self.server = server

    def render(self, record: FrameRecord) -> None:
        if self.server.wanted:
            ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(record.image, cv2.COLOR_RGB2BGR),
                                    [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if ok:
                record.encoded["preview"] = jpeg.tobytes()

    def write(self, record: FrameRecord) -> None:
        jpeg = record.encoded.pop("preview", None)
        if jpeg is not None:
            self.server.publish(jpeg)

    def finish(self) -> None:
        """The server outlives the run's sinks (the page shows the end state); its owner closes it."""

    def abort(self) -> None:
        """As `finish`."""
