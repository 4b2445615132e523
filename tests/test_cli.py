"""`effdet-video [run] INPUT -o OUTPUT` in-process, with the fake engine in place of build_engine."""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video import cli
from effdet_video.engine import factory
from tests.support.fakes import FakeEngine, fake_detections, run_cli
from tests.support.pipeline_clips import make_clip, probe


def seconds(p) -> list[Fraction]:
    return [pts * p.time_base for pts in p.pts]


@pytest.fixture(scope="module")
def small_clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("cli") / "small.mp4", 12, audio=True)


@pytest.mark.parametrize("name", ["pan-1080p30-h264-aac.mp4", "pan-720p30-h264-noaudio.mp4", "pan-360p25-vfr.mkv"])
def test_output_keeps_frames_timing_size_and_audio(media, tmp_path, capsys, engines, name):
    source = media / name
    output = tmp_path / f"out{source.suffix}"
    code, err = run_cli(capsys, source, "-o", output, "--preset", "ultrafast", "--batch-size", "8")
    assert code == 0, err
    before, after = probe(source), probe(output)
    assert after.frames == before.frames
    assert seconds(after) == seconds(before)  # incl. the VFR clip's uneven and repeated timestamps
    assert (after.width, after.height) == (before.width, before.height)
    assert after.duration_s == pytest.approx(before.duration_s, abs=1e-3)
    assert after.audio_codecs == before.audio_codecs and after.audio_packets == before.audio_packets
    assert sorted(p.name for p in tmp_path.iterdir()) == [output.name]
    assert "annotate" in err and "total" in err  # the timing summary
    assert "frame/s" not in err  # no progress bar when stderr is not a terminal
    assert sum(engines[0].counts) == before.frames and set(engines[0].counts[:-1]) <= {8}


def test_detections_only_of_the_benchmark_clip(media, tmp_path, capsys, engines):
    source = media / "bench-1080p30-h264-aac.mp4"
    code, err = run_cli(capsys, source, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--coco", tmp_path / "d.json",
                        "--quiet")
    assert code == 0 and err == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.json", "d.jsonl"]
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["pts"] for r in rows] == [round(i / 30, 6) for i in range(300)]  # the clip is 30 fps from 0
    assert len(json.loads((tmp_path / "d.json").read_text())) == 2 * 300


def test_jsonl_and_coco_contents(small_clip, tmp_path, capsys, engines):
    code, _ = run_cli(capsys, small_clip, "-o", tmp_path / "o.mp4", "--jsonl", tmp_path / "d.jsonl",
                      "--coco", tmp_path / "c.json")
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == list(range(12))
    assert [r["pts"] for r in rows] == [i / 10 for i in range(12)]
    assert rows[7]["detections"] == [
        {"box": fake_detections(7)[0, :4].tolist(), "score": 0.9, "class_id": 1, "class_name": "person"},
        {"box": fake_detections(7)[1, :4].tolist(), "score": 0.6, "class_id": 3, "class_name": "car"},
    ]
    coco = json.loads((tmp_path / "c.json").read_text())
    assert len(coco) == 24
    x0, y0, x1, y1 = fake_detections(7)[0, :4].tolist()
    assert coco[14] == {"image_id": 7, "category_id": 1, "bbox": [x0, y0, x1 - x0, y1 - y0], "score": 0.9}


@pytest.mark.parametrize("options, kept", [
    (["--classes", "car"], [3]),
    (["--classes", "person,18", "--score-threshold", "0.2"], [1, 18]),
    (["--score-threshold", "0.95"], []),
    (["--max-det", "1"], [1]),
])
def test_detection_options(small_clip, tmp_path, capsys, engines, options, kept):
    code, _ = run_cli(capsys, small_clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", *options)
    assert code == 0
    for line in (tmp_path / "d.jsonl").read_text().splitlines():
        assert [d["class_id"] for d in json.loads(line)["detections"]] == kept


def test_batch_size_gives_fixed_batches(small_clip, tmp_path, capsys, engines):
    code, _ = run_cli(capsys, small_clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--batch-size", "5")
    assert code == 0 and engines[0].counts == [5, 5, 2] and engines[0].batch_size == 5


def test_rotated_odd_sized_clip(tmp_path, capsys, engines):
    """65x49 cannot be 4:2:0; the output keeps the exact size (4:4:4), the rotation and the picture."""
    source = make_clip(tmp_path / "odd.mp4", 8, width=65, height=49, rotation=90, pix_fmt="yuv444p")
    output = tmp_path / "out.mp4"
    code, err = run_cli(capsys, source, "-o", output, "--classes", "car", "--crf", "10")
    assert code == 0, err
    before, after = probe(source), probe(output)
    assert (after.width, after.height, after.rotation, after.pix_fmt) == (65, 49, 90, "yuv444p")
    assert after.frames == 8 and seconds(after) == seconds(before)
    with av.open(str(source)) as a, av.open(str(output)) as b:
        first_in = next(a.decode(video=0)).to_ndarray(format="rgb24").astype(int)
        first_out = next(b.decode(video=0)).to_ndarray(format="rgb24").astype(int)
    # The car box is drawn at display x 30..46, y 20..38: in the coded frame that is rows 30..46 from
    # the bottom-left turned; far from it, the picture is the input's (not rotated, not mirrored).
    assert np.abs(first_out[:, :8] - first_in[:, :8]).mean() < 6
    assert np.abs(first_out - first_in).max() > 100


def test_codec_crf_preset_and_no_audio(small_clip, tmp_path, capsys, engines):
    output = tmp_path / "o.mkv"
    code, err = run_cli(capsys, small_clip, "-o", output, "--codec", "libx265", "--crf", "30", "--preset",
                        "ultrafast", "--no-audio")
    assert code == 0, err
    result = probe(output)
    assert result.video_codec == "hevc" and result.audio_packets == [] and result.frames == 12


def test_plain_and_run_forms_are_the_same(small_clip, tmp_path, capsys, engines):
    assert run_cli(capsys, "run", small_clip, "--no-video", "--jsonl", tmp_path / "a.jsonl")[0] == 0
    assert run_cli(capsys, small_clip, "--no-video", "--jsonl", tmp_path / "b.jsonl")[0] == 0
    assert run_cli(capsys, "--debug", small_clip, "--no-video", "--jsonl", tmp_path / "c.jsonl")[0] == 0
    texts = {(tmp_path / f"{n}.jsonl").read_text() for n in "abc"}
    assert len(texts) == 1 and texts.pop().count("\n") == 12


def test_existing_output_needs_overwrite(small_clip, tmp_path, capsys, engines):
    output = tmp_path / "o.mp4"
    output.write_bytes(b"keep me")
    code, err = run_cli(capsys, small_clip, "-o", output)
    assert code == 2 and err.strip() == f"error: output {output} exists; turn overwrite on to replace it"
    assert output.read_bytes() == b"keep me" and engines == []
    assert run_cli(capsys, small_clip, "-o", output, "--overwrite")[0] == 0
    assert probe(output).frames == 12


def test_output_equal_to_input_is_refused(small_clip, capsys, engines):
    before = small_clip.read_bytes()
    code, err = run_cli(capsys, small_clip, "-o", small_clip, "--overwrite")
    assert code == 2 and "is the input file" in err and len(err.splitlines()) == 1
    assert small_clip.read_bytes() == before


def _zero_frames(folder: Path) -> Path:
    """A Matroska file whose video track has no packets (only audio does)."""
    path = folder / "zero-frames.mkv"
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=10)
        video.width, video.height, video.pix_fmt = 64, 48, "yuv420p"
        sound = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(10):
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 48000, i * 1024
            for packet in sound.encode(frame):
                out.mux(packet)
    return path


def _unknown_codec(folder: Path) -> Path:
    """A NUT file with an EVC video stream, a codec this FFmpeg build cannot decode."""
    path = folder / "evc.nut"
    with av.open(str(path), "w") as out:
        stream = out.add_mux_stream("evc", rate=10, width=64, height=48)
        stream.time_base = Fraction(1, 10)
        for i in range(3):
            packet = av.Packet(bytes(64))
            packet.stream, packet.pts, packet.dts, packet.time_base = stream, i, i, Fraction(1, 10)
            out.mux(packet)
    return path


@pytest.mark.parametrize("case, message", [
    ("missing", "no such file"),
    ("broken-not-a-video.mp4", "not a readable video file"),
    ("broken-truncated.mp4", "not a readable video file"),
    ("zero-frames", "no decodable frames"),
    ("unknown-codec", "unsupported video codec"),
])
def test_bad_input_is_one_line_exit_2_and_no_output(media, tmp_path, capsys, engines, case, message):
    inputs = {"missing": tmp_path / "missing.mp4", "zero-frames": _zero_frames(tmp_path),
              "unknown-codec": _unknown_codec(tmp_path)}
    source = inputs.get(case, media / case)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    code, err = run_cli(capsys, source, "-o", out_dir / "o.mp4", "--jsonl", out_dir / "o.jsonl")
    assert code == 2
    assert len(err.splitlines()) == 1 and err.startswith("error: ") and message in err
    assert list(out_dir.iterdir()) == [] and engines == []


def test_corrupt_packets_are_skipped_and_reported(media, tmp_path, capsys, engines):
    output = tmp_path / "o.mp4"
    code, err = run_cli(capsys, media / "broken-corrupt-middle.mp4", "-o", output, "--preset", "ultrafast")
    assert code == 0
    assert "damaged input: skipped 6 unreadable packets; about 4 frames missing (after 0.77 s, 1.43 s); every readable frame was processed" in err
    assert probe(output).frames == 84  # every decodable frame, in a file that decodes cleanly


def test_engine_error_is_one_line_exit_1_and_traceback_only_with_debug(small_clip, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(factory, "build_engine", lambda spec: FakeEngine(batch_size=2, fail_on_batch=2))
    code, err = run_cli(capsys, small_clip, "-o", tmp_path / "o.mp4")
    assert code == 1 and err.splitlines() == ["error: EngineFailure: engine failed on batch 2"]
    code, err = run_cli(capsys, small_clip, "-o", tmp_path / "o.mp4", "--debug")
    assert code == 1 and "Traceback" in err and err.splitlines()[-1] == "error: EngineFailure: engine failed on batch 2"
    assert list(tmp_path.iterdir()) == []


def test_usage_errors(small_clip, tmp_path, capsys, engines):
    code, err = run_cli(capsys, small_clip)
    assert code == 2 and "missing -o/--output" in err
    code, err = run_cli(capsys, small_clip, "--no-video")
    assert code == 2 and "needs --jsonl and/or --coco" in err
    code, err = run_cli(capsys, small_clip, "-o", tmp_path / "o.gif")
    assert code == 2 and "unsupported output extension" in err and list(tmp_path.iterdir()) == []
    code, err = run_cli(capsys, small_clip, "-o", tmp_path / "o.mp4", "--codec", "no-such-codec")
    assert code == 2 and err.splitlines() == ["error: video codec 'no-such-codec' is not available (no-such-codec)"]
    assert list(tmp_path.iterdir()) == []


def test_commands_are_registered_lazily(monkeypatch):
    group = cli.cli
    assert "run" in group.list_commands(None)
    monkeypatch.setattr(cli, "COMMANDS", ("run", "no-such-command"))
    assert group.list_commands(None) == ["run"]
    assert group.get_command(None, "no-such-command") is None
    assert group.get_command(None, "run").name == "run"


def test_progress_bar_on_a_terminal_only(small_clip, tmp_path):
    """With stderr on a terminal, tqdm shows frames and fps; --quiet hides it (and the summary)."""
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    child = ("from effdet_video.engine import factory; from tests.support.fakes import FakeEngine; "
             "factory.build_engine = lambda spec: FakeEngine(batch_size=spec.batch_size); "
             "from effdet_video.cli import main; main()")
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo)}

    def terminal_text(*extra: str) -> str:
        leader, follower = pty.openpty()
        fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a 100-column terminal
        subprocess.run([sys.executable, "-c", child, str(small_clip), "--no-video", "--jsonl",
                        str(tmp_path / "d.jsonl"), "--overwrite", *extra], env=env, stderr=follower, check=True)
        os.close(follower)
        chunks = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal is drained
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(leader)
        return b"".join(chunks).decode()

    shown = terminal_text()
    assert "/12 [" in shown and "frame/s]" in shown and "total" in shown
    assert terminal_text("--quiet") == ""


def test_repeated_timestamps_go_into_mp4_one_tick_apart_with_a_warning(media, tmp_path, capsys, engines):
    """The VFR clip repeats some frames' timestamps, which Matroska keeps and MP4 cannot store."""
    source = media / "pan-360p25-vfr.mkv"
    output = tmp_path / "out.mp4"
    code, err = run_cli(capsys, source, "-o", output, "--preset", "ultrafast", "-q")
    assert code == 0, err
    before, after = probe(source), probe(output)
    repeated = len(before.pts) - len(set(before.pts))
    assert repeated > 0 and after.frames == before.frames
    assert all(b > a for a, b in zip(after.pts, after.pts[1:]))
    tick = before.time_base
    assert all(0 <= b - a <= tick for a, b in zip(sorted(seconds(before)), seconds(after)))  # a tick later at most
    assert f"{output}: {repeated} frames repeat an earlier frame's timestamp" in err.splitlines()[-1]


def assert_unknown_model_error(code: int, err: str) -> None:
    assert code == 2, err
    assert err.splitlines() == [err.strip()] and err.startswith("error: unknown model 'd9'; known: efficientdet-d0, ")


@pytest.mark.parametrize("command", ["run", "batch", "live"])
def test_an_unknown_model_is_one_line_and_exit_2(small_clip, tmp_path, capsys, engines, command):
    """configs.UnknownModelError is a UserError: no command converts it, each reports it the same way."""
    args = {"run": [small_clip, "-o", tmp_path / "o.mp4"],
            "batch": [small_clip.parent, "-o", tmp_path / "batch"],
            "live": [small_clip, "--realtime", "--jsonl", tmp_path / "l.jsonl"]}[command]
    assert_unknown_model_error(*run_cli(capsys, command, *args, "--model", "d9"))
    assert engines == [] and list(tmp_path.iterdir()) == []


def test_bench_of_an_unknown_model_is_one_line_and_exit_2(capsys):
    """Before any engine is timed (not as an error row per engine)."""
    assert_unknown_model_error(*run_cli(capsys, "bench", "--device", "cpu", "--no-peers", "--no-startup",
                                        "--models", "d0,d9"))


def test_live_on_a_file_names_the_realtime_flag(small_clip, tmp_path, capsys, engines):
    """The library says 'realtime on'; the CLI words it as its flag."""
    code, err = run_cli(capsys, "live", small_clip, "--jsonl", tmp_path / "l.jsonl")
    assert code == 2 and err.splitlines() == [f"error: {small_clip} is a file: pass --realtime to play it as a live "
                                              "source, or use `effdet-video FILE -o OUT` to process every frame"]
    assert engines == [] and list(tmp_path.iterdir()) == []
