"""Memory stays flat: a 10x longer input must not raise the peak RSS of a run, or of its encoder
process, by more than 10%."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.pipeline_clips import make_clip

REPO = Path(__file__).resolve().parents[1]

# Runs one file through the pipeline (fake engine, video + JSON Lines outputs) and prints its peak RSS
# and its encoder process's.
CHILD = """
import resource
import sys
from pathlib import Path
from effdet_video.pipeline.runner import run_pipeline
from effdet_video.sinks.detection_sinks import JsonLinesSink
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from tests.support.fakes import FakeEngine

source_path, out = Path(sys.argv[1]), Path(sys.argv[2])
source = VideoFileSource(source_path)
sinks = [VideoFileSink(out.with_suffix(".mp4"), source.info, preset="ultrafast"), JsonLinesSink(out.with_suffix(".jsonl"))]
stats = run_pipeline(source, FakeEngine(batch_size=4, image_size=(256, 256)), sinks)
source.close()
peak_kb = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
encoder_peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(stats.frames, peak_kb, encoder_peak_kb)
"""


def peak_rss_kb(source: Path, out: Path) -> tuple[int, int, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run([sys.executable, "-c", CHILD, source, out], env=env, capture_output=True, text=True,
                          check=True)
    frames, peak, encoder_peak = done.stdout.split()
    return int(frames), int(peak), int(encoder_peak)


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_input_length(tmp_path):
    # 640x360: a frame is 0.7 MB in RGB, so buffering the long clip would add ~200 MB to a ~250 MB process.
    short = make_clip(tmp_path / "short.mp4", 30, width=640, height=360, rate=30)
    long = make_clip(tmp_path / "long.mp4", 300, width=640, height=360, rate=30)
    short_frames, short_peak, short_encoder = peak_rss_kb(short, tmp_path / "short-out")
    long_frames, long_peak, long_encoder = peak_rss_kb(long, tmp_path / "long-out")
    assert (short_frames, long_frames) == (30, 300)
    assert long_peak <= 1.10 * short_peak, f"peak RSS {short_peak} kB for 30 frames, {long_peak} kB for 300"
    assert short_encoder > 10_000  # the encoder process was measured (Python and PyAV alone are more)
    assert long_encoder <= 1.10 * short_encoder, f"encoder {short_encoder} kB for 30 frames, {long_encoder} kB for 300"
