"""The video file writer's encoder process (sinks/encode_process.py): what the user gets when it or its
parent dies mid-run - one line, and no file left behind."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video.core.frames import FrameRecord
from effdet_video.errors import UserError
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from tests.support.pipeline_clips import make_clip

REPO = Path(__file__).resolve().parents[1]


def _record(index: int, width: int = 64, height: int = 48) -> FrameRecord:
    picture = av.VideoFrame.from_ndarray(np.full((height * 3 // 2, width), (index * 20) % 256, np.uint8),
                                         format="yuv420p")
    return FrameRecord(index=index, pts=index, time_base=Fraction(1, 10), duration=1, canvas=picture,
                       detections=np.zeros((0, 6), np.float32))


def _write(sink: VideoFileSink, count: int) -> None:
    for index in range(count):
        record = _record(index)
        sink.render(record)
        sink.write(record)


def test_a_dead_encoder_is_one_user_error_and_no_file(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 4)
    out = tmp_path / "out" / "annotated.mp4"
    out.parent.mkdir()
    source = VideoFileSource(clip)
    sink = VideoFileSink(out, source.info, preset="ultrafast")
    _write(sink, 3)
    os.kill(sink._process.pid, signal.SIGKILL)
    with pytest.raises(UserError, match=r"annotated\.mp4: the encoder process stopped \(exit code -9\)"):
        _write(sink, 20)
        sink.finish()
    sink.abort()
    source.close()
    assert list(out.parent.iterdir()) == []


def test_the_encoder_process_starts_no_blas_thread_pool(tmp_path):
    """numpy's OpenBLAS would start a spinning thread per core in the child, which computes nothing with it."""
    source = VideoFileSource(make_clip(tmp_path / "in.mp4", 2))
    sink = VideoFileSink(tmp_path / "out.mp4", source.info, preset="ultrafast")
    try:
        environment = Path(f"/proc/{sink._process.pid}/environ").read_bytes().split(b"\0")
        assert b"OPENBLAS_NUM_THREADS=1" in environment
    finally:
        sink.abort()
        source.close()


# A parent that writes a few frames and then dies without a word (as under SIGKILL or the OOM killer).
DYING_PARENT = """
import os, signal, sys
from pathlib import Path
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from test_video_sink import _write
sink = VideoFileSink(Path(sys.argv[2]), VideoFileSource(Path(sys.argv[1])).info, preset="ultrafast")
_write(sink, 5)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_parent_leaves_no_partial_file(tmp_path):
    clip = make_clip(tmp_path / "in.mp4", 4)
    out = tmp_path / "out" / "annotated.mp4"
    out.parent.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    died = subprocess.run([sys.executable, "-c", DYING_PARENT, str(clip), str(out)], env=env, capture_output=True,
                          text=True, timeout=60)
    assert died.returncode == -signal.SIGKILL, died.stderr
    deadline = time.monotonic() + 10
    while list(out.parent.iterdir()) and time.monotonic() < deadline:  # the orphaned child cleans up
        time.sleep(0.05)
    assert list(out.parent.iterdir()) == []


# A parent whose main module imports torch, as the command line's does: the encoder child must not run
# it again (multiprocessing's spawn would) nor create anything in /dev/shm. Prints what it saw.
LIGHT_PARENT = """
import os, sys
from pathlib import Path
import torch
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from test_video_sink import _write

def shm():
    return set(os.listdir("/dev/shm")) if os.path.isdir("/dev/shm") else set()

if __name__ == "__main__":
    before = shm()
    source = VideoFileSource(Path(sys.argv[1]))
    sink = VideoFileSink(Path(sys.argv[2]), source.info, preset="ultrafast")
    maps = open(f"/proc/{sink._process.pid}/maps").read()
    print("libavcodec" in maps, "libtorch" in maps, "cv2" in maps, shm() == before)
    _write(sink, 6)
    sink.finish()
    source.close()
    print(sink.phases["open_s"] > 0, sink.phases["finish_s"] > 0)
"""


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")
def test_the_encoder_process_is_light_and_its_slots_have_no_name(tmp_path):
    """The child runs only the encoder's module (no torch, no OpenCV, whatever the parent's main module
    imported), and its slots live in an anonymous file: nothing appears in /dev/shm."""
    clip = make_clip(tmp_path / "in.mp4", 4)
    parent = tmp_path / "parent.py"
    parent.write_text(LIGHT_PARENT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run([sys.executable, str(parent), str(clip), str(tmp_path / "out.mp4")], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "False", "False", "True", "True", "True"]
    with av.open(str(tmp_path / "out.mp4")) as written:
        assert sum(1 for _ in written.decode(video=0)) == 6
