"""`effdet-video live` end to end in subprocesses: a clip served as a live UDP stream on loopback, the preview
(MJPEG + stats) and JSON Lines, source loss, and Ctrl-C with a recording that stays valid."""
from __future__ import annotations

import json
import signal
import time
import urllib.request
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from tests.support.live_helpers import CLIP_SIZE, LiveProcess, free_udp_port, make_ts_clip, start_streamer

ENGINE_ARGS = ("--device", "cpu", "--random-weights", "--image-size", "128", "--score-threshold", "0",
               "--max-det", "3")
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ts_clip(media, tmp_path_factory) -> Path:
    return make_ts_clip(media / "pan-720p30-h264-noaudio.mp4", tmp_path_factory.mktemp("live") / "clip.ts")


def read_mjpeg_frames(url: str, count: int, timeout: float = 30.0) -> list[np.ndarray]:
    """The first `count` JPEG parts of a multipart/x-mixed-replace stream, decoded."""
    frames: list[np.ndarray] = []
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.headers["Content-Type"] == "multipart/x-mixed-replace; boundary=frame"
        while len(frames) < count:
            assert response.readline() == b"--frame\r\n"
            headers = {}
            while (line := response.readline().strip()):
                key, value = line.decode().split(": ", 1)
                headers[key] = value
            assert headers["Content-Type"] == "image/jpeg"
            jpeg = response.read(int(headers["Content-Length"]))
            assert response.readline() == b"\r\n"
            frames.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    return frames


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def test_udp_stream_reaches_preview_and_jsonl_then_source_loss_ends_cleanly(ts_clip, tmp_path) -> None:
    port = free_udp_port()
    streamer = start_streamer(ts_clip, port, seconds=8)
    live = LiveProcess(f"udp://127.0.0.1:{port}", *ENGINE_ARGS, "--source-timeout", "2", "--preview",
                       "--preview-port", "0", "--jsonl", str(tmp_path / "d.jsonl"),
                       "--stats-json", str(tmp_path / "stats.json"))
    try:
        url = live.preview_url()
        assert url.startswith("http://127.0.0.1:")
        frames = read_mjpeg_frames(url + "stream.mjpg", count=3)
        assert all(frame.shape == (CLIP_SIZE[1], CLIP_SIZE[0], 3) for frame in frames)
        stats = get_json(url + "stats.json")
        assert stats["source"]["state"] == "live" and stats["recent"]["frames"] >= 3
        assert streamer.wait(30) == 0
        assert live.finish(30) == 0
    finally:
        live.kill()
        streamer.kill()
    assert "effdet-video live: source lost: no data for 2 s" in live.lines
    report = json.loads((tmp_path / "stats.json").read_text())
    latency = report["latency"]
    assert report["ended"] == "source lost: no data for 2 s"
    assert latency["frames"] + report["dropped"] + report["dropped_warmup"] == report["decoded"] and report["dropped"] > 0
    assert 0 < latency["p50_ms"] <= latency["p99_ms"] <= latency["max_ms"]
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [row["index"] for row in rows] == list(range(latency["frames"]))
    assert all(len(row["detections"]) == 3 for row in rows)
    assert all(b["pts"] > a["pts"] for a, b in zip(rows, rows[1:]))


def test_ctrl_c_ends_within_two_seconds_and_the_recording_is_valid(media, tmp_path) -> None:
    recording = tmp_path / "live.mp4"
    live = LiveProcess(str(media / "pan-720p30-h264-noaudio.mp4"), "--realtime", "--loop", *ENGINE_ARGS,
                       "-o", str(recording), "--preview", "--preview-port", "0")
    try:
        url = live.preview_url()
        deadline = time.monotonic() + 60
        while get_json(url + "stats.json")["recent"]["frames"] < 3:
            assert time.monotonic() < deadline, live.lines
            time.sleep(0.1)
        live.process.send_signal(signal.SIGINT)
        interrupted = time.monotonic()
        code = live.finish(10)
        took = time.monotonic() - interrupted
    finally:
        live.kill()
    assert code == 0, live.lines
    assert took < 2.0
    assert any(line.startswith("effdet-video live: stopped by SIGINT; ") for line in live.lines)
    with av.open(str(recording)) as container:
        pictures = list(container.decode(video=0))
    assert len(pictures) >= 3
    assert (pictures[0].width, pictures[0].height) == (1280, 720)
    assert not list(tmp_path.glob(".*partial*"))
