"""Issue #18: damaged, cut-short and unusual inputs, option errors, unwritable outputs: one line naming
the file, the README's exit codes, every readable frame kept, nothing left behind."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from effdet_video.ops.letterbox import letterbox_geometry
from effdet_video.sources.source import VideoFileSource
from tests.support.damaged_media import make_noisy_mkv, overwrite, readable_frames, remux_to_mkv, truncate
from tests.support.fakes import run_cli


@pytest.fixture(scope="module")
def damaged_mkv(media, tmp_path_factory) -> Path:
    """30 frames of the 1080p clip (with its audio) in Matroska, 4 kB overwritten near the end: the
    frame-threaded decoder reports the error at the flush, in place of the 3 frames still in its threads."""
    folder = tmp_path_factory.mktemp("damaged")
    clean = remux_to_mkv(media / "pan-1080p30-h264-aac.mp4", folder / "clean.mkv", 30)
    return overwrite(clean, folder / "damaged.mkv", 0.93, 4096, seed=93)


def test_damaged_mkv_keeps_every_readable_frame(damaged_mkv):
    readable = readable_frames(damaged_mkv)
    assert len(readable) == 27
    source = VideoFileSource(damaged_mkv)
    try:
        assert [record.pts for record in source.frames()] == readable
        assert source.skipped_packets == 1
        warnings = source.warnings()
    finally:
        source.close()
    assert len(warnings) == 1 and warnings[0].startswith(f"{damaged_mkv}: damaged input: skipped 1 unreadable packets")


def test_damaged_mkv_run_warns_in_one_line(damaged_mkv, tmp_path, capsys, engines):
    jsonl = tmp_path / "d.jsonl"
    code, err = run_cli(capsys, damaged_mkv, "--no-video", "--jsonl", jsonl, "-q")
    assert code == 0
    assert len(jsonl.read_text().splitlines()) == 27
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"warning: {damaged_mkv}: damaged input: skipped 1 unreadable")


def test_clean_and_variable_rate_inputs_give_no_warning(media):
    for name in ("pan-360p25-vfr.mkv", "pan-720p30-h264-noaudio.mp4"):
        source = VideoFileSource(media / name)
        try:
            assert sum(1 for _ in source.frames()) in (60, 90)
            assert source.warnings() == []
        finally:
            source.close()


def test_truncated_mkv_says_it_ended_early(tmp_path, capsys, engines):
    clip = truncate(make_noisy_mkv(tmp_path / "clean.mkv"), tmp_path / "cut.mkv", 0.5)
    jsonl = tmp_path / "d.jsonl"
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", jsonl, "-q")
    assert code == 0
    assert len(jsonl.read_text().splitlines()) == 20
    assert err.splitlines() == [f"warning: {clip}: the input ended early: its header declares 4.03 s, the video "
                                "stops at 2.00 s (truncated file?); processed what is there"]


@pytest.mark.parametrize("frame_hw", [(1080, 1920), (1920, 1080)])
def test_boxes_are_clipped_to_the_frame(frame_hw):
    geometry = letterbox_geometry(frame_hw, (512, 512))
    height, width = frame_hw
    rows = np.array([[-5, -3, width + 70, height + 87, 0.9, 1], [10, 20, 30, 40, 0.5, 2]], np.float32)
    clipped = geometry.clip_to_frame(rows)
    assert clipped.tolist() == [[0, 0, width, height, np.float32(0.9), 1], [10, 20, 30, 40, 0.5, 2]]
    assert rows[0, 2] == width + 70  # the engine's array is left alone


def test_jsonl_and_coco_boxes_stay_inside_a_portrait_frame(tmp_path, capsys, monkeypatch):
    """A fake engine whose box reaches into the letterbox padding (right of a portrait frame)."""
    from effdet_video.engine import factory
    from tests.support.fakes import FakeEngine
    from tests.support.pipeline_clips import make_clip

    class PaddingEngine(FakeEngine):
        def submit(self, batch):
            pending = super().submit(batch)
            result = pending.result()
            result.detections[: batch.count, 0] = [10, 20, 60, 60, 0.9, 1]  # x1 = 60 past the 32 px width
            result.num_valid[: batch.count] = 1
            return pending

    monkeypatch.setattr(factory, "build_engine", lambda spec: PaddingEngine(batch_size=spec.batch_size))
    clip = make_clip(tmp_path / "portrait.mp4", 3, width=32, height=64)
    code, _ = run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--coco", tmp_path / "c.json")
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert {tuple(d["box"]) for r in rows for d in r["detections"]} == {(10, 20, 32, 60)}
    assert {tuple(c["bbox"]) for c in json.loads((tmp_path / "c.json").read_text())} == {(10, 20, 22, 40)}


def test_unknown_class_opens_nothing(small_clip_path, tmp_path, capsys, engines):
    code, err = run_cli(capsys, small_clip_path, "-o", tmp_path / "o.mp4", "--jsonl", tmp_path / "d.jsonl",
                        "--classes", "nosuchclass")
    assert code == 2
    assert err.splitlines() == [err.strip()] and "unknown class 'nosuchclass'" in err
    assert list(tmp_path.iterdir()) == [] and engines == []


@pytest.fixture(scope="module")
def small_clip_path(tmp_path_factory) -> Path:
    from tests.support.pipeline_clips import make_clip

    return make_clip(tmp_path_factory.mktemp("small") / "small.mp4", 6, audio=True)


@pytest.fixture(scope="module")
def still_images(tmp_path_factory) -> Path:
    import cv2

    folder = tmp_path_factory.mktemp("images")
    image = np.full((60, 80, 3), 200, np.uint8)
    cv2.imwrite(str(folder / "grey.png"), image)
    (folder / "sub").mkdir()
    cv2.imwrite(str(folder / "sub" / "grey.jpg"), image)
    return folder


def test_an_image_gives_an_annotated_image_and_detections(still_images, tmp_path, capsys, engines):
    import cv2

    code, err = run_cli(capsys, still_images / "grey.png", "-o", tmp_path / "boxes.png", "--jsonl", tmp_path / "d.jsonl",
                        "--coco", tmp_path / "c.json", "-q")
    assert code == 0 and err == ""
    drawn = cv2.imread(str(tmp_path / "boxes.png"))
    assert drawn.shape == (60, 80, 3)
    assert (drawn != 200).any(axis=2).sum() > 50  # the fake engine's person and car boxes are drawn
    rows = [json.loads(line) for line in (tmp_path / "d.jsonl").read_text().splitlines()]
    assert [r["index"] for r in rows] == [0] and [d["class_name"] for d in rows[0]["detections"]] == ["person", "car"]
    assert len(json.loads((tmp_path / "c.json").read_text())) == 2


def test_an_image_into_a_video_file_is_refused(still_images, tmp_path, capsys, engines):
    code, err = run_cli(capsys, still_images / "grey.png", "-o", tmp_path / "o.mp4")
    assert code == 2
    assert err.splitlines() == [f"error: {tmp_path / 'o.mp4'}: the input is a still image, so the annotated copy is "
                                "an image too: use one of .png, .jpg, .jpeg, .bmp, .webp, .tif, .tiff"]
    assert list(tmp_path.iterdir()) == [] and engines == []


def test_batch_of_images(still_images, tmp_path, capsys, engines):
    out = tmp_path / "out"
    code, _ = run_cli(capsys, "batch", still_images, "-o", out, "--ext", "png,jpg", "--format", "video,jsonl", "-q")
    assert code == 0
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")) == [
        "grey.png", "grey.png.jsonl", "sub/grey.jpg", "sub/grey.jpg.jsonl"]
