"""Issue #18: outputs that cannot be written (read-only folder, full disk), audio the container cannot
hold, and a killed process: one line naming the file, exit 2, nothing left behind."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video.errors import UserError
from effdet_video.sinks import detection_sinks, output_file
from effdet_video.sinks.output_file import UnnamedFile
from tests.support.fakes import run_cli
from tests.support.pipeline_clips import encode_all, make_clip

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("in") / "in.mp4", 6, audio=True)


def test_read_only_folder_is_refused_up_front(clip, capsys, engines):
    """/sys is read-only, for root too (whom permission bits do not stop)."""
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", "/sys/dets.jsonl")
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith("error: /sys/dets.jsonl: cannot write in /sys (")
    assert engines == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a folder without write permission")
def test_folder_without_write_permission_is_refused(clip, tmp_path, capsys, engines):
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        code, err = run_cli(capsys, clip, "-o", folder / "o.mp4")
    finally:
        folder.chmod(0o755)
    assert code == 2 and "cannot write in" in err and "Permission denied" in err
    assert list(folder.iterdir()) == []


def test_too_little_free_space_is_refused_up_front(clip, tmp_path, capsys, engines, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(output_file.shutil, "disk_usage", lambda path: real(path)._replace(free=100))
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl")
    assert code == 2
    assert err.splitlines() == [f"error: {tmp_path / 'd.jsonl'}: {tmp_path} has 0 MiB free and this run needs "
                                "about 1 MiB; free some space or write elsewhere"]
    assert list(tmp_path.iterdir()) == [] and engines == []


class FullDiskFile(UnnamedFile):
    """Writes go to /dev/full, which fails every write with ENOSPC, as a full disk does."""

    def __init__(self, final: Path) -> None:
        super().__init__(final)
        self.stream.close()
        self.stream = open("/dev/full", "w", encoding="utf-8", buffering=1)


def test_disk_full_while_writing_is_one_line_naming_the_file(clip, tmp_path, capsys, engines, monkeypatch):
    monkeypatch.setattr(detection_sinks, "UnnamedFile", FullDiskFile)
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--coco", tmp_path / "c.json")
    assert code == 2
    assert err.splitlines() == [f"error: {tmp_path / 'd.jsonl'}: writing failed (No space left on device)"]
    assert list(tmp_path.iterdir()) == []


def test_unnamed_file_has_no_name_until_committed(tmp_path):
    final = tmp_path / "d.jsonl"
    written = UnnamedFile(final)
    written.write("{}\n")
    assert list(tmp_path.iterdir()) == []
    written.commit()
    assert list(tmp_path.iterdir()) == [final] and final.read_text() == "{}\n"
    discarded = UnnamedFile(tmp_path / "e.jsonl")
    discarded.write("x")
    discarded.discard()
    assert list(tmp_path.iterdir()) == [final]
    full = FullDiskFile(tmp_path / "f.jsonl")
    full.write("x")  # buffered: the flush at commit fails
    with pytest.raises(UserError, match=f"^{tmp_path / 'f.jsonl'}: writing failed \\(No space left on device\\)$"):
        full.commit()
    assert list(tmp_path.iterdir()) == [final]


def _clip_with_audio(path: Path, codec: str) -> Path:
    """Five grey frames and half a second of silence in `codec` (16-bit samples)."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream(codec, rate=48000, layout="mono")
        pictures = [av.VideoFrame.from_ndarray(np.full((48, 64, 3), 40 * i, np.uint8), format="rgb24")
                    for i in range(5)]
        for i, picture in enumerate(pictures):
            picture.pts = i
        encode_all(out, video, pictures)
        samples = sound.codec_context.frame_size or 1024
        silence = [av.AudioFrame.from_ndarray(np.zeros((1, samples), np.int16), format="s16", layout="mono")
                   for _ in range(0, 24000, samples)]
        for start, frame in zip(range(0, 24000, samples), silence):
            frame.sample_rate, frame.pts = 48000, start
        encode_all(out, sound, silence)
    return path


def test_audio_the_container_cannot_hold_is_refused_up_front(tmp_path, capsys, engines):
    """FLAC into .mov: the muxer takes the stream and fails only at the trailer, after the whole run."""
    source = _clip_with_audio(tmp_path / "flac.mkv", "flac")
    out = tmp_path / "out"
    out.mkdir()
    code, err = run_cli(capsys, source, "-o", out / "o.mov")
    assert code == 2
    assert err.splitlines() == [err.strip()]
    assert err.startswith(f"error: {source}: its audio (flac) cannot be copied into a .mov file (")
    assert err.strip().endswith("leave the audio out, or use another extension (.mkv holds most codecs)")
    assert list(out.iterdir()) == [] and len(engines) == 1 and engines[0].frames == 0
    code, _ = run_cli(capsys, source, "-o", out / "o.mov", "--no-audio")
    assert code == 0
    code, _ = run_cli(capsys, source, "-o", out / "o.mkv")
    assert code == 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def _opened_in(pid: int, folder: Path) -> bool:
    try:
        return any(os.readlink(fd).startswith(str(folder)) for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("video", [False, True])
def test_sigkill_leaves_nothing(tmp_path, video):
    """The process killed while it writes: no file (named or not), segment or child process remains."""
    source = make_clip(tmp_path / "in.mp4", 200, audio=True)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    outputs = ["-o", out_dir / "o.mp4"] if video else ["--no-video"]
    shm_before = set(os.listdir("/dev/shm"))
    process = subprocess.Popen(
        [sys.executable, "-m", "effdet_video.cli", source, *outputs, "--jsonl", out_dir / "o.jsonl",
         "--random-weights", "--device", "cpu", "--batch-size", "1"],
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not _opened_in(process.pid, out_dir):  # the unnamed JSON Lines file is open: running
            assert process.poll() is None and time.monotonic() < deadline, "the run did not start"
            time.sleep(0.05)
        time.sleep(1.0)
        children = _children(process.pid)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    finally:
        process.kill()
    deadline = time.monotonic() + 30  # the encoder child and the resource tracker clean up after it
    while (list(out_dir.iterdir()) or any(Path(f"/proc/{child}").exists() for child in children)
           or set(os.listdir("/dev/shm")) - shm_before) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert list(out_dir.iterdir()) == []
    assert [child for child in children if Path(f"/proc/{child}").exists()] == []
    assert set(os.listdir("/dev/shm")) - shm_before == set()


@pytest.mark.parametrize("folder, message", [
    ("/sys/kernel/effdet-out", "output folder /sys/kernel/effdet-out: cannot create it ("),
    ("/sys", "output folder /sys: cannot write in it ("),
])
def test_batch_output_folder_that_cannot_be_written(clip, capsys, engines, folder, message):
    code, err = run_cli(capsys, "batch", clip.parent, "-o", folder, "--format", "jsonl")
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith(f"error: {message}")
    assert engines == []
