"""Ctrl-C and SIGTERM on a real `effdet-video` process (CPU engine, random weights): every thread stops
within 2 s, the exit code says which signal, and no output or temporary file is left."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.pipeline_clips import make_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_mid_run_stops_quickly_and_leaves_nothing(tmp_path, signum, exit_code):
    source = make_clip(tmp_path / "in.mp4", 100, audio=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(
        [sys.executable, "-m", "effdet_video.cli", source, "-o", out_dir / "o.mp4", "--jsonl", out_dir / "o.jsonl",
         "--random-weights", "--device", "cpu", "--batch-size", "1"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not list(out_dir.iterdir()):  # the video's partial exists (JSON Lines has no name until done)
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        time.sleep(1.0)  # a few frames into the run
        sent = time.monotonic()
        process.send_signal(signum)
        _, err = process.communicate(timeout=10)
        stopped_after = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == exit_code
    assert stopped_after < 2.0
    assert err.strip().splitlines()[-1] == f"interrupted by {signal.Signals(signum).name}; no output written"
    assert list(out_dir.iterdir()) == []
