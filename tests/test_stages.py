"""Unit tests of the stages: reorder buffer, detection filter, drawing, outputs, decoding errors."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from effdet_video.commands.common import model_labels, parse_classes
from effdet_video.configs.labels import coco_labels
from effdet_video.errors import UserError
from effdet_video.pipeline.reorder import ReorderBuffer
from effdet_video.sinks.encoding import default_codec, encoder_pixel_format, rgb_to_picture
from effdet_video.sinks.output_file import PartialFile, check_output_path
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.annotate import class_colour, draw_detections
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.prepare import to_coded_orientation, to_display_orientation
from tests.support.pipeline_clips import make_clip


def test_reorder_buffer_releases_consecutive_indices_only():
    order: ReorderBuffer[str] = ReorderBuffer()
    assert list(order.push(2, "c")) == []
    assert list(order.push(1, "b")) == []
    assert list(order.push(0, "a")) == ["a", "b", "c"]
    assert list(order.push(4, "e")) == [] and len(order) == 1
    assert list(order.push(3, "d")) == ["d", "e"]
    with pytest.raises(ValueError, match="arrived twice"):
        list(order.push(3, "again"))


ROWS = np.array([[0, 0, 10, 10, 0.9, 1], [5, 5, 20, 20, 0.6, 3], [1, 1, 4, 4, 0.3, 18]], dtype=np.float32)


@pytest.mark.parametrize("detection_filter, kept_classes", [
    (DetectionFilter(), [1, 3]),
    (DetectionFilter(score_threshold=0.0), [1, 3, 18]),
    (DetectionFilter(score_threshold=0.95), []),
    (DetectionFilter(class_ids=frozenset({3, 18}), score_threshold=0.0), [3, 18]),
    (DetectionFilter(score_threshold=0.0, max_det=2), [1, 3]),
])
def test_detection_filter(detection_filter, kept_classes):
    assert detection_filter.apply(ROWS)[:, 5].tolist() == kept_classes


def test_parse_classes_accepts_names_and_ids():
    assert parse_classes("person, Car,18", coco_labels()) == frozenset({1, 3, 18})
    assert parse_classes(None, coco_labels()) is None
    with pytest.raises(UserError, match="unknown class 'unicorn'"):
        parse_classes("person,unicorn", coco_labels())


def test_model_labels_come_from_the_file_beside_the_weights(tmp_path):
    weights = tmp_path / "mine.h5"
    (tmp_path / "mine.labels.txt").write_text("apple\npear\n")
    options = {"random_weights": False, "weights": str(weights), "model": "d0"}
    assert model_labels(options) == {1: "apple", 2: "pear"}
    assert parse_classes("pear", model_labels(options)) == frozenset({2})
    assert model_labels({**options, "weights": None, "model": "demo"})[1] == "cat"
    assert model_labels({**options, "weights": None})[1] == "person"


def test_draw_detections_draws_box_in_class_colour():
    image = np.zeros((120, 160, 3), dtype=np.uint8)
    draw_detections(image, np.array([[40, 50, 100, 110, 0.87, 3]], dtype=np.float32))
    colour = class_colour(3)
    assert tuple(image[80, 40]) == colour and tuple(image[110, 70]) == colour  # left and bottom edges
    assert not image[80, 70].any()  # inside the box stays untouched
    is_colour = (image == colour).all(axis=-1)
    label_rows = np.flatnonzero(is_colour[:50, 40])  # the filled label sits right above the box
    assert label_rows.min() > 30 and is_colour[label_rows.min(), 40:80].all()
    text = ~is_colour[label_rows.min():50, 40:80] & image[label_rows.min():50, 40:80].any(axis=-1)
    assert text.sum() > 50  # dark anti-aliased text over the label
    assert not image[: label_rows.min()].any()
    assert class_colour(1) != class_colour(3)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_orientation_round_trip(rotation):
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    shown = to_display_orientation(image, rotation)
    assert shown.shape[:2] == ((3, 2) if rotation % 180 else (2, 3))
    assert np.array_equal(to_coded_orientation(shown, rotation), image)
    if rotation == 90:  # counter-clockwise: the top-right pixel ends top-left
        assert np.array_equal(shown[0, 0], image[0, 2])


def test_output_path_checks(tmp_path):
    source = tmp_path / "in.mp4"
    source.write_bytes(b"x")
    with pytest.raises(UserError, match="is the input"):
        check_output_path(tmp_path / "." / "in.mp4", (source,), overwrite=True)
    existing = tmp_path / "out.mp4"
    existing.write_bytes(b"y")
    with pytest.raises(UserError, match="turn overwrite on"):
        check_output_path(existing, (source,), overwrite=False)
    check_output_path(existing, (source,), overwrite=True)
    with pytest.raises(UserError, match="does not exist"):
        check_output_path(tmp_path / "missing" / "out.mp4", (source,), overwrite=False)


def test_partial_file_commit_and_discard(tmp_path):
    final = tmp_path / "out.mp4"
    partial = PartialFile(final)
    assert partial.temporary.parent == tmp_path and partial.temporary.suffix == ".mp4"
    partial.temporary.write_bytes(b"data")
    partial.commit()
    assert final.read_bytes() == b"data" and not partial.temporary.exists()
    partial.temporary.write_bytes(b"more")
    partial.discard()
    partial.discard()
    assert not partial.temporary.exists() and final.read_bytes() == b"data"


def test_encoder_settings():
    assert default_codec(Path("a.MP4")) == "libx264" and default_codec(Path("a.webm")) == "libvpx-vp9"
    with pytest.raises(UserError, match="extension"):
        default_codec(Path("a.gif"))
    assert encoder_pixel_format("libx264", 64, 48) == "yuv420p"
    assert encoder_pixel_format("libx264", 65, 49) == "yuv444p"
    with pytest.raises(UserError, match="65x49"):
        encoder_pixel_format("mpeg4", 65, 49)


def test_rgb_to_picture_matches_swscale():
    """The OpenCV fast path must give what PyAV's own conversion gives, within rounding."""
    ys, xs = np.mgrid[0:48, 0:64]
    image = np.stack([xs * 4, ys * 5, (xs + ys) * 2], -1).astype(np.uint8)
    fast = rgb_to_picture(image, "yuv420p").to_ndarray().astype(int)
    reference = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p").to_ndarray()
    assert fast.shape == reference.shape
    assert np.abs(fast - reference).max() <= 2
    assert rgb_to_picture(image[:47, :63].copy(), "yuv444p").format.name == "yuv444p"


def test_source_reads_frames_timestamps_and_rotation(tmp_path):
    clip = make_clip(tmp_path / "r.mp4", 6, rotation=270)
    source = VideoFileSource(clip)
    records = list(source.frames())
    source.close()
    assert [r.index for r in records] == list(range(6))
    assert source.info.rotation == 270 and (source.info.width, source.info.height) == (64, 48)
    assert [r.pts * r.time_base for r in records] == [Fraction(i, 10) for i in range(6)]
    assert source.skipped_packets == 0 and source.expected_frames == 6


def test_source_skips_corrupt_packets(media):
    source = VideoFileSource(media / "broken-corrupt-middle.mp4")
    frames = sum(1 for _ in source.frames())
    source.close()
    assert (frames, source.skipped_packets) == (84, 6)


@pytest.mark.parametrize("pix_fmt, size", [("yuv420p", (64, 48)), ("nv12", (64, 48)), ("yuv444p", (63, 47))])
def test_pictures_convert_to_rgb_like_swscale(pix_fmt: str, size: tuple[int, int]) -> None:
    """OpenCV converts 4:2:0 pictures of even size, swscale the rest; both give the same image, to the
    chroma upsampling (OpenCV repeats, swscale interpolates): on flat colour blocks they agree exactly
    away from the block edges, to their fixed-point rounding."""
    import av

    from effdet_video.stages.prepare import picture_to_rgb

    width, height = size
    rgb = np.zeros((height, width, 3), np.uint8)
    rgb[:, : width // 2] = (200, 40, 90)
    rgb[:, width // 2:] = (30, 160, 220)
    picture = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(format=pix_fmt)
    ours = picture_to_rgb(picture).astype(int)
    reference = picture.to_ndarray(format="rgb24").astype(int)
    assert ours.shape == (height, width, 3)
    away_from_edge = np.r_[0: width // 2 - 2, width // 2 + 2: width]
    assert np.abs(ours - reference)[:, away_from_edge].max() <= 3  # fixed-point rounding: 3 measured
    assert np.abs(ours[:, away_from_edge] - rgb[:, away_from_edge]).max() <= 4


def test_batches_the_engine_finished_go_on_before_later_ones_are_full() -> None:
    """Frames of a finished batch leave the batcher with the next frame added, not once `in_flight`
    more batches are submitted behind it: at a stream's start the first frames would otherwise wait for
    three batches' worth of decoding."""
    import time

    from effdet_video.core.clock import StageClock
    from effdet_video.core.frames import FrameRecord
    from effdet_video.core.letterbox import Letterbox
    from effdet_video.stages.infer import EngineBatcher
    from tests.support.fakes import FakeEngine

    batcher = EngineBatcher(FakeEngine(batch_size=4, delay_s=0.05), DetectionFilter(score_threshold=0.0),
                            StageClock("infer"), in_flight=2)

    def frame(index: int) -> FrameRecord:
        record = FrameRecord(index=index, pts=index, time_base=Fraction(1, 30))
        record.net_image = np.zeros((64, 64, 3), np.uint8)
        record.letterbox = Letterbox(scale=1.0, resized_hw=(64, 64), image_scale=1.0, frame_hw=(64, 64))
        return record

    assert [batcher.add(frame(i)) for i in range(4)] == [[]] * 4  # submitted, still computing
    assert batcher.add(frame(4)) == []
    time.sleep(0.08)
    assert [r.index for r in batcher.add(frame(5))] == [0, 1, 2, 3]
    assert [r.index for r in batcher.flush()] == [4, 5]
