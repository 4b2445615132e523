"""Live mode in-process: latest-frame mailbox, bounded latency with a slow engine, source loss and reconnect
backoff, output checks."""
from __future__ import annotations

import contextlib
import socket
import threading
import time

import av
import pytest

from effdet_video.errors import UserError
from effdet_video.pipeline.live_runner import LiveOutputs, run_live
from effdet_video.sources.live_source import LatestFrame, LiveLocation, LiveOptions, LiveSource, parse_location
from tests.support.fakes import FakeEngine

ENGINE_S = 0.1


def test_mailbox_keeps_only_the_newest_frame_and_counts_the_rest() -> None:
    mailbox = LatestFrame()
    for i in range(5):
        mailbox.put((f"frame{i}", float(i)))
    assert mailbox.wait(take=True) == ("frame4", 4.0)
    assert mailbox.overwritten == 4
    mailbox.put(("frame5", 5.0))
    mailbox.end()
    assert mailbox.wait(take=True) == ("frame5", 5.0)
    assert mailbox.wait(take=True) is None
    assert mailbox.overwritten == 4


def test_locations_are_classified_and_bad_ones_refused(media, tmp_path) -> None:
    clip = media / "pan-720p30-h264-noaudio.mp4"
    assert parse_location("udp://127.0.0.1:5000").kind == "network"
    assert parse_location("rtsp://cam/stream").network
    assert parse_location(str(clip)) == LiveLocation(str(clip), "file")
    with pytest.raises(UserError, match="unsupported stream protocol 'ftp'"):
        parse_location("ftp://host/x")
    with pytest.raises(UserError, match="no such camera"):
        parse_location("/dev/video987")
    with pytest.raises(UserError, match="no such file"):
        parse_location(str(tmp_path / "missing.mp4"))
    with pytest.raises(UserError, match=r"play it in real time \(realtime on\)"):
        LiveSource(parse_location(str(clip)))


def test_latency_stays_bounded_when_the_engine_is_slower_than_the_source(media, tmp_path) -> None:
    """A 30 fps source and a 100 ms engine: about two frames in three are dropped (and counted), and
    latency stays near one engine time instead of growing with a backlog."""
    messages: list[str] = []
    result = run_live(parse_location(str(media / "pan-720p30-h264-noaudio.mp4")), LiveOptions(realtime=True),
                      lambda: FakeEngine(batch_size=1, delay_s=ENGINE_S), LiveOutputs(jsonl=str(tmp_path / "d.jsonl")),
                      report=messages.append)
    latency = result["latency"]
    assert result["decoded"] == 90
    assert result["ended"] == "source ended" and messages == ["source ended"]
    assert latency["frames"] + result["dropped"] == 90
    assert 40 <= result["dropped"] <= 75
    assert ENGINE_S * 1000 <= latency["p50_ms"] and latency["p99_ms"] < 3 * ENGINE_S * 1000
    assert latency["drift"]["last_p50_ms"] < latency["drift"]["first_p50_ms"] + ENGINE_S * 1000 / 2
    rows = (tmp_path / "d.jsonl").read_text().splitlines()
    assert len(rows) == latency["frames"]


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_network_source_reconnects_with_backoff_then_gives_up() -> None:
    messages: list[str] = []
    url = f"http://127.0.0.1:{_closed_port()}/stream.ts"
    source = LiveSource(parse_location(url), LiveOptions(reconnect=True, reconnect_max=3, backoff_s=0.1,
                                                         timeout_s=1.0), messages.append)
    with pytest.raises(UserError, match="gave up after 3 reconnect attempts"):
        source.start()
    source.close()
    assert [m.split("; ")[1] for m in messages[:3]] == [
        "reconnecting in 0.1 s (attempt 1/3)", "reconnecting in 0.2 s (attempt 2/3)",
        "reconnecting in 0.4 s (attempt 3/3)"]
    assert messages[0].startswith("source lost: Connection refused")
    assert source.state == "lost"


def test_network_source_without_reconnect_fails_with_one_clear_message() -> None:
    url = f"http://127.0.0.1:{_closed_port()}/stream.ts"
    with pytest.raises(UserError, match=r"cannot read http://127\.0\.0\.1:\d+/stream\.ts: source lost: "
                                        "Connection refused"):
        LiveSource(parse_location(url)).start()


def test_annotated_frames_go_out_to_a_udp_url(media) -> None:
    port = _free_udp_port()
    received: list[tuple[int, int]] = []

    def receive() -> None:
        with av.open(f"udp://127.0.0.1:{port}", timeout=2) as container:
            with contextlib.suppress(av.error.ExitError):  # the stream stops: no data for 2 s
                received.extend((f.width, f.height) for f in container.decode(video=0))

    receiver = threading.Thread(target=receive)
    receiver.start()
    time.sleep(0.5)  # let it bind the port before the first (key) frame is sent
    result = run_live(parse_location(str(media / "pan-720p30-h264-noaudio.mp4")), LiveOptions(realtime=True),
                      lambda: FakeEngine(batch_size=1, image_size=(128, 128)),
                      LiveOutputs(output=f"udp://127.0.0.1:{port}"))
    receiver.join(10)
    assert result["latency"]["frames"] > 30
    assert received == [(1280, 720)] * result["latency"]["frames"]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _SlowToStart(FakeEngine):
    """An engine like the CPU one at its first call: the first batch takes `first_s`."""

    def __init__(self, first_s: float) -> None:
        super().__init__(batch_size=1)
        self._first_s = first_s

    def submit(self, batch):
        if self.batches == 0:
            time.sleep(self._first_s)
        return super().submit(batch)


def test_a_file_plays_only_once_the_engine_is_ready(tmp_path) -> None:
    """`live clip --realtime --duration 5` on a 3 s clip, the engine taking 1.5 s to build and 1.5 s for
    its first batch: the clock starts after both, so the frames are processed, not dropped."""
    from tests.support.pipeline_clips import make_clip

    clip = make_clip(tmp_path / "clip.mp4", 30, rate=10)

    def build() -> FakeEngine:
        time.sleep(1.5)
        return _SlowToStart(first_s=1.5)

    result = run_live(parse_location(str(clip)), LiveOptions(realtime=True), build,
                      LiveOutputs(jsonl=str(tmp_path / "d.jsonl")), duration_s=5.0)
    assert result["ended"] == "source ended"
    assert result["decoded"] == 30 and result["dropped_warmup"] == 0
    assert result["latency"]["frames"] + result["dropped"] == 30 and result["dropped"] <= 2
    assert result["latency"]["max_ms"] < 500
