"""Boxes drawn straight into YUV planes (stages/annotate.py's paint_lists, ops/paint.py) look as the RGB
drawing does: edges on OpenCV's pixels in every rotation, the rest of the frame as the old RGB round
trip left it, and box colours that decode to the intended RGB in the input's own colour matrix."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch

from effdet_video.ops.colour import ColourMatrix
from effdet_video.ops.paint import Patch, paint, paint_group
from effdet_video.sinks.video_sink import VideoFileSink
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.annotate import PlaneGeometry, box_layouts, class_colour, draw_detections, paint_lists
from effdet_video.stages.canvas import packed_planes

BT601, BT709 = ColourMatrix(0.299, 0.114), ColourMatrix(0.2126, 0.0722)


def detections(width: int, height: int) -> np.ndarray:
    """Boxes of several classes: ordinary, against the top edge (label pushed down to 0), running off the
    right and bottom, tiny, and on odd coordinates."""
    rows = [(0.10, 0.30, 0.40, 0.70, 0.91, 1), (0.55, 0.01, 0.80, 0.30, 0.55, 3), (0.85, 0.60, 1.02, 1.05, 0.47, 17),
            (0.45, 0.75, 0.47, 0.78, 0.99, 44), (0.2013, 0.1017, 0.3331, 0.2087, 0.66, 62)]
    return np.array([(x0 * width, y0 * height, x1 * width, y1 * height, s, c) for x0, y0, x1, y1, s, c in rows],
                    np.float32)


def yuv_painted(i420: np.ndarray, rows: np.ndarray, rotation: int = 0, matrix: ColourMatrix = BT601) -> np.ndarray:
    """`rows` (display pixels) painted into a copy of an I420 frame [H*3/2, W] in coded orientation."""
    height, width = i420.shape[0] * 2 // 3, i420.shape[1]
    packed = i420.reshape(-1).copy()
    luma, chroma = packed_planes(packed, "yuv420p", width, height)
    drawn = paint_lists(rows, PlaneGeometry(height, width, rotation, (2, 2), matrix))
    paint(luma, drawn.luma)
    paint(chroma, drawn.chroma)
    return packed.reshape(i420.shape)


def band(rows: np.ndarray, height: int, width: int, margin: int) -> np.ndarray:
    """True within `margin` pixels (square neighbourhood) of every box edge and label (display pixels)."""
    mask = np.zeros((height, width), np.uint8)
    for layout in box_layouts(rows, height, width):
        x0, y0, x1, y1 = layout.corners
        cv2.rectangle(mask, (x0, y0), (x1, y1), 1, layout.thickness)
        left, top, right, bottom = layout.label
        cv2.rectangle(mask, (left, top), (right, bottom), 1, cv2.FILLED)
    kernel = np.ones((2 * margin + 1, 2 * margin + 1), np.uint8)
    return cv2.dilate(mask, kernel).astype(bool)


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
@pytest.mark.parametrize("coded", [(1080, 1920), (480, 640), (720, 1280)])  # thickness 3, 1, 2
def test_box_edges_fall_on_the_pixels_opencv_draws(coded, rotation):
    height, width = coded
    display_hw = (width, height) if rotation in (90, 270) else (height, width)
    rows = detections(display_hw[1], display_hw[0])
    black = np.zeros((height * 3 // 2, width), np.uint8)
    black[:height] = 16
    black[height:] = 128
    luma = yuv_painted(black, rows, rotation)[:height]
    ours = np.rot90(luma, k=rotation // 90) > 16
    reference_rgb = np.zeros((*display_hw, 3), np.uint8)
    draw_detections(reference_rgb, rows)
    reference = reference_rgb.max(axis=2) > 0
    assert ours.shape == reference.shape
    labels = np.zeros(display_hw, bool)
    corners = np.zeros(display_hw, bool)
    for layout in box_layouts(rows, *display_hw):
        left, top, right, bottom = layout.label
        labels[max(top, 0): bottom + 1, max(left, 0): right + 1] = True
        for x in layout.corners[0::2]:
            for y in layout.corners[1::2]:
                reach = layout.thickness + 2
                corners[max(y - reach, 0): y + reach + 1, max(x - reach, 0): x + reach + 1] = True
    differ = (ours != reference) & ~labels
    assert not (differ & ~corners).any(), np.argwhere(differ & ~corners)[:5]
    assert (ours & ~labels).sum() > 1000  # the edges are there


@pytest.fixture(scope="module")
def frame_1080p(media: Path) -> np.ndarray:
    with av.open(str(media / "bench-1080p30-h264-aac.mp4")) as container:
        return next(container.decode(video=0)).to_ndarray()  # yuv420p [1620, 1920]


def test_yuv_drawing_matches_the_rgb_reference_outside_a_band_around_boxes(frame_1080p, tmp_path):
    """The frames before encoding: the old RGB path (OpenCV YUV -> RGB, drawn, RGB -> I420) against the
    planes drawn in place. Outside 2 pixels around edges and labels only the old round trip differs."""
    rows = detections(1920, 1080)
    reference_rgb = cv2.cvtColor(frame_1080p, cv2.COLOR_YUV2RGB_I420)
    draw_detections(reference_rgb, rows)
    reference = cv2.cvtColor(cv2.cvtColor(reference_rgb, cv2.COLOR_RGB2YUV_I420), cv2.COLOR_YUV2RGB_I420)
    ours = cv2.cvtColor(yuv_painted(frame_1080p, rows), cv2.COLOR_YUV2RGB_I420)
    outside = ~band(rows, 1080, 1920, margin=2)
    difference = np.abs(ours.astype(int) - reference.astype(int))[outside]
    assert difference.mean() <= 1.0, difference.mean()
    untouched = cv2.cvtColor(frame_1080p, cv2.COLOR_YUV2RGB_I420)
    assert np.array_equal(ours[outside], untouched[outside])  # nothing but the boxes changed
    inside = band(rows, 1080, 1920, margin=0)
    assert np.abs(ours.astype(int) - untouched.astype(int))[inside].mean() > 20  # and they did


@pytest.mark.parametrize("height, width, matrix", [(1080, 1920, BT709), (480, 720, BT601),
                                                    (720, 1280, ColourMatrix(0.299, 0.114, full_range=True))])
def test_labels_are_the_rgb_labels_converted_within_a_level(height, width, matrix):
    """Every label pixel (text and ground) against the RGB drawing converted in the same matrix: luma
    within one level, and each chroma block the label touches within one level of the average over the
    label's own pixels in it."""
    rows = detections(width, height)
    reference_rgb = np.zeros((height, width, 3), np.uint8)
    draw_detections(reference_rgb, rows)
    reference = matrix.rgb_to_yuv(reference_rgb)
    frame = np.zeros((height * 3 // 2, width), np.uint8)
    luma, chroma = packed_planes(frame.reshape(-1), "yuv420p", width, height)
    drawn = paint_lists(rows, PlaneGeometry(height, width, 0, (2, 2), matrix))
    paint(luma, drawn.luma)
    paint(chroma, drawn.chroma)
    texts = 0
    for layout in box_layouts(rows, height, width):
        left, top, right, bottom = layout.label
        right, bottom = min(right, width - 1), min(bottom, height - 1)
        expected = reference[top: bottom + 1, left: right + 1]
        got = luma[top: bottom + 1, left: right + 1]
        assert np.abs(got - np.rint(expected[..., 0])).max() <= 1
        texts += (got < np.rint(expected[..., 0]).max() - 20).sum()  # the text is there, darker than the ground
        block_top, block_left, block_bottom, block_right = top // 2, left // 2, bottom // 2 + 1, right // 2 + 1
        label = np.zeros((2 * (block_bottom - block_top), 2 * (block_right - block_left)), np.float32)
        label[top - 2 * block_top: bottom + 1 - 2 * block_top, left - 2 * block_left: right + 1 - 2 * block_left] = 1
        blocks = reference[2 * block_top: 2 * block_bottom, 2 * block_left: 2 * block_right, 1:]
        sums = (blocks * label[..., None]).reshape(block_bottom - block_top, 2, block_right - block_left, 2, 2)
        weights = label.reshape(block_bottom - block_top, 2, block_right - block_left, 2).sum(axis=(1, 3))
        averaged = sums.sum(axis=(1, 3)) / weights[..., None]
        assert np.abs(chroma[block_top: block_bottom, block_left: block_right] - np.rint(averaged)).max() <= 1
    assert texts > 100


@pytest.mark.parametrize("size, colorspace, matrix", [((1080, 1920), 1, "ITU709"), ((480, 720), 6, "SMPTE170M")])
def test_box_colours_decode_to_the_intended_rgb_in_the_inputs_matrix(tmp_path, size, colorspace, matrix):
    """A clip tagged BT.709 (HD) or BT.601 (SD) and a box small enough to be a solid square of its
    colour: the written file, decoded by swscale in the input's matrix, shows the class colour."""
    height, width = size
    clip = tmp_path / "in.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"crf": "18", "preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.colorspace = stream.codec_context.color_primaries = colorspace
        stream.codec_context.color_trc = colorspace
        stream.codec_context.color_range = 1
        for index in range(3):
            grey = av.VideoFrame.from_ndarray(np.full((height * 3 // 2, width), 110, np.uint8), format="yuv420p")
            grey.pts = index
            out.mux(stream.encode(grey))
        out.mux(stream.encode(None))
    source = VideoFileSource(clip)
    assert source.info.colour[0] == colorspace
    annotated = tmp_path / "out.mp4"
    sink = VideoFileSink(annotated, source.info, preset="ultrafast", crf=10)
    square = np.array([[200, 100, 201, 101, 0.9, 5]], np.float32)  # a 2 x 2 box: its outline is solid
    for record in source.frames():
        record.canvas, record.detections = record.picture, square
        sink.render(record)
        sink.write(record)
    sink.finish()
    source.close()
    with av.open(str(annotated)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.colorspace == colorspace
        decoded = next(container.decode(stream))
    rgb = decoded.reformat(format="rgb24", src_colorspace=matrix, src_color_range="MPEG").to_ndarray()
    assert np.abs(rgb[100:102, 200:202].astype(int) - class_colour(5)).max() <= 3, rgb[101, 201]
    default = decoded.reformat(format="rgb24", src_colorspace="ITU601" if colorspace == 1 else "ITU709",
                               src_color_range="MPEG").to_ndarray()
    assert np.abs(default[101, 201].astype(int) - class_colour(5)).max() > 3  # the matrix matters here


def _random_patches(rng: np.random.Generator, height: int, width: int, channels: int) -> list[Patch]:
    patches = []
    for _ in range(12):
        h, w = rng.integers(1, 40, 2)
        row, col = rng.integers(-20, height, 1)[0], rng.integers(-20, width, 1)[0]
        shape = (h, w) if channels == 1 else (h, w, 2)
        if rng.random() < 0.5:
            patches.append(Patch(int(row), int(col), rng.integers(0, 256, shape, dtype=np.uint8)))
        else:
            value = int(rng.integers(0, 256)) if channels == 1 else tuple(int(v) for v in rng.integers(0, 256, 2))
            patches.append(Patch.fill(int(row), int(col), int(h), int(w), value))
    return patches


def check_group_painted(device: str) -> None:
    rng = np.random.default_rng(3)
    height, width = 64, 96
    frames = rng.integers(0, 256, (3, height * width * 3 // 2), dtype=np.uint8)
    luma_patches = {g: _random_patches(rng, height, width, 1) for g in (0, 2)}
    chroma_patches = {g: _random_patches(rng, height // 2, width // 2, 2) for g in (1, 2)}
    expected = frames.copy()
    for g in range(3):
        luma, chroma = packed_planes(expected[g], "nv12", width, height)
        paint(luma, luma_patches.get(g, ()))
        paint(chroma, chroma_patches.get(g, ()))
    group = torch.from_numpy(frames).to(device)
    paint_group(group, 0, (height, width), 1, list(luma_patches.items()))
    paint_group(group, height * width, (height // 2, width // 2), 2, list(chroma_patches.items()))
    assert np.array_equal(group.cpu().numpy(), expected)


def test_a_group_is_painted_at_once_as_each_frame_alone():
    check_group_painted("cpu")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_a_gpu_group_is_painted_as_each_frame_alone_on_the_host():
    check_group_painted("cuda")


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_rotated_frames_are_drawn_in_coded_orientation(rotation):
    """Drawing the coded frame under a display rotation equals turning it upright, drawing, turning back:
    luma and chroma, labels included."""
    height, width, turns = 720, 1280, rotation // 90
    coded = np.random.default_rng(1).integers(0, 256, (height * 3 // 2, width), dtype=np.uint8)
    luma, chroma = packed_planes(coded.reshape(-1), "yuv420p", width, height)
    upright_luma, upright_chroma = np.rot90(luma, turns), np.rot90(chroma, turns, axes=(0, 1))
    display_h, display_w = upright_luma.shape
    upright = np.zeros(display_h * display_w * 3 // 2, np.uint8)
    up_luma, up_chroma = packed_planes(upright, "yuv420p", display_w, display_h)
    up_luma[:], up_chroma[:] = upright_luma, upright_chroma
    rows = detections(display_w, display_h)
    drawn_upright = yuv_painted(upright.reshape(-1, display_w), rows)
    drawn_coded = yuv_painted(coded, rows, rotation)
    expected_luma, expected_chroma = packed_planes(drawn_upright.reshape(-1), "yuv420p", display_w, display_h)
    got_luma, got_chroma = packed_planes(drawn_coded.reshape(-1), "yuv420p", width, height)
    assert np.array_equal(np.rot90(got_luma, turns), expected_luma)
    assert np.array_equal(np.rot90(got_chroma, turns, axes=(0, 1)), expected_chroma)


def test_the_sink_keeps_nv12_frames_as_they_are(tmp_path):
    """Frames decoded to nv12 (NVDEC's layout) go to libx264 in nv12, drawn in place."""
    clip = tmp_path / "in.mp4"
    with av.open(str(clip), "w") as out:
        stream = out.add_stream("libx264", rate=10, options={"preset": "ultrafast"})
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        for index in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((144, 128), 60 + index * 30, np.uint8), format="yuv420p")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    source = VideoFileSource(clip)
    info = source.info.__class__(**{**source.info.__dict__, "pix_fmt": "nv12"})
    sink = VideoFileSink(tmp_path / "out.mp4", info, preset="ultrafast", crf=0)
    assert sink._pix_fmt == "nv12"
    for record in source.frames():
        record.canvas = record.picture.reformat(format="nv12")
        record.detections = np.zeros((0, 6), np.float32)
        sink.render(record)
        sink.write(record)
    sink.finish()
    source.close()
    with av.open(str(tmp_path / "out.mp4")) as container:
        lumas = [frame.to_ndarray()[:96].mean() for frame in container.decode(video=0)]
    assert np.allclose(lumas, [60, 90, 120, 150], atol=1)


def test_track_ids_are_in_the_labels_and_trails_are_drawn_the_same_both_ways():
    rows = detections(1280, 720)[:2]
    track_ids = np.array([7, -1])
    trails = [np.array([[100.0, 600.0], [140.0, 590.0], [180.0, 570.0]]), np.zeros((0, 2))]
    texts = [layout.text for layout in box_layouts(rows, 720, 1280, track_ids=track_ids)]
    assert texts[0].startswith("person #7 ") and "#" not in texts[1]
    black = np.zeros((720 * 3 // 2, 1280), np.uint8)
    black[:720], black[720:] = 16, 128
    packed = black.reshape(-1).copy()
    luma, chroma = packed_planes(packed, "yuv420p", 1280, 720)
    drawn = paint_lists(rows, PlaneGeometry(720, 1280, 0, (2, 2), BT601), track_ids=track_ids, trails=trails)
    paint(luma, drawn.luma)
    paint(chroma, drawn.chroma)
    reference = np.zeros((720, 1280, 3), np.uint8)
    draw_detections(reference, rows, track_ids=track_ids, trails=trails)
    for x, y in trails[0].astype(int):  # a dot of the box's colour on each centre, in both
        assert luma[y, x] > 16 and reference[y, x].max() > 0
        assert luma[y, x - 3] == 16 and reference[y, x - 3].max() == 0
