"""The preview page in a real browser: a clip served as a live UDP stream on loopback, `run_live` with an
engine that reports one known box, and headless Chromium's screenshot of the page must show that box in
the annotator's colour for its class."""
from __future__ import annotations

import shutil
import subprocess
import threading

import av
import cv2
import numpy as np
import pytest

from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, ReadyDetections
from effdet_video.pipeline.live_runner import LiveOutputs, run_live
from effdet_video.sources.live_source import LiveOptions, parse_location
from effdet_video.stages.annotate import class_colour
from tests.support.live_helpers import CLIP_SIZE, free_udp_port, make_ts_clip, start_streamer

PERSON = 1
COLOUR_TOLERANCE = 40
pytestmark = pytest.mark.slow


class OneBoxEngine(Engine):
    """Every frame: one person box over the middle half of the frame (in original-frame pixels)."""

    batch_size, image_size, max_det, device = 1, (128, 128), 4, "test"

    def submit(self, batch: InferenceBatch) -> ReadyDetections:
        detections = np.zeros((1, self.max_det, 6), np.float32)
        height, width = batch.valid_hw[0] * batch.image_scales[0]
        detections[0, 0] = (width / 4, height / 4, 3 * width / 4, 3 * height / 4, 0.9, PERSON)
        return ReadyDetections(DetectionBatch(detections, np.array([1], np.int32), 1))


def colour_pixels(rgb: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((np.abs(rgb.astype(np.int32) - colour).max(axis=2) <= COLOUR_TOLERANCE).sum())


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("chromium is not installed (run tests/setup_chromium.sh; it needs root and network)")
    return path


def screenshot(chromium: str, url: str, target, profile) -> np.ndarray:
    width, height = CLIP_SIZE[0] + 200, CLIP_SIZE[1] + 200
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={profile}", f"--screenshot={target}", f"--window-size={width},{height}",
                    "--virtual-time-budget=3000", url],
                   check=True, timeout=60, capture_output=True)
    return cv2.cvtColor(cv2.imread(str(target)), cv2.COLOR_BGR2RGB)


def test_preview_page_in_chromium_shows_the_boxes(chromium, media, tmp_path) -> None:
    clip = make_ts_clip(media / "pan-720p30-h264-noaudio.mp4", tmp_path / "clip.ts")
    port = free_udp_port()
    messages: list[str] = []
    ready = threading.Event()

    def report(message: str) -> None:
        messages.append(message)
        ready.set()

    streamer = start_streamer(clip, port, seconds=30)
    result: dict = {}
    run = threading.Thread(target=lambda: result.update(run_live(
        parse_location(f"udp://127.0.0.1:{port}"), LiveOptions(timeout_s=1.0), OneBoxEngine,
        LiveOutputs(preview=True, preview_port=0), report=report)))
    run.start()
    try:
        assert ready.wait(30), "no preview URL reported"
        url = messages[0].removeprefix("preview: ")
        shot = screenshot(chromium, url, tmp_path / "page.png", tmp_path / "profile")
    finally:
        streamer.kill()
        streamer.wait()
        run.join(30)
    with av.open(str(clip)) as container:
        plain = next(container.decode(video=0)).to_ndarray(format="rgb24")
    colour = class_colour(PERSON)
    assert colour_pixels(plain, colour) < 20  # the clip itself has (almost) none of the box colour
    assert colour_pixels(shot, colour) > 200, f"box colour {colour} not in the screenshot"
    assert result["latency"]["frames"] > 0
