"""Drawing detections: a box and a 'name score' label per detection ('name #id score' when tracked, and
optionally its track's recent centres as a dotted trail), laid out once (`box_layouts`, `trail_dots`)
and drawn two ways with the same pixels and colours:

- `draw_detections`: OpenCV on an RGB frame (the live preview, the naive benchmark peer, the reference
  the YUV drawing is tested against);
- `paint_lists`: straight into the decoder's YUV planes, in the coded orientation the encoder takes,
  colours converted with the input's own matrix and range (ops/colour.py): box edges are plane fills,
  a label is a patch rendered once per text, colour, size and alignment (cached) and pasted.
"""
from __future__ import annotations

import colorsys
import dataclasses
import functools
from typing import Sequence

import cv2
import numpy as np

from effdet_video.configs.labels import label_name
from effdet_video.ops.colour import ColourMatrix
from effdet_video.ops.paint import PaintList, Patch

_GOLDEN_RATIO = 0.618033988749895
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_TEXT_COLOUR = (0, 0, 0)


@functools.cache
def class_colour(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated RGB colour per class (hues spaced by the golden ratio)."""
    hue = (int(class_id) * _GOLDEN_RATIO) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(red * 255), int(green * 255), int(blue * 255)


@dataclasses.dataclass(frozen=True)
class BoxLayout:
    """One detection as drawn, in display pixels: the box corners (inclusive), its line thickness, the
    label's filled rectangle (inclusive corners) and text with its font scale, its baseline `text_h`
    rows below the label's top."""

    colour: tuple[int, int, int]
    corners: tuple[int, int, int, int]
    thickness: int
    text: str
    font_scale: float
    label: tuple[int, int, int, int]
    text_h: int


def line_thickness(height: int, width: int) -> int:
    """Line width follows the frame size so boxes and labels stay legible from 240p to 4K."""
    return max(1, round(min(height, width) / 360))


def box_layouts(detections: np.ndarray, height: int, width: int, labels: dict[int, str] | None = None,
                track_ids: np.ndarray | None = None) -> list[BoxLayout]:
    """Rows (x0, y0, x1, y1, score, class_id) on a `height` x `width` display frame; `track_ids` (-1:
    none) name each box's track in its label."""
    thickness = line_thickness(height, width)
    font_scale = 0.4 * thickness
    layouts = []
    for index, (x0, y0, x1, y1, score, class_id) in enumerate(detections):
        left, top = int(round(x0)), int(round(y0))
        track = f" #{int(track_ids[index])}" if track_ids is not None and track_ids[index] >= 0 else ""
        text = f"{label_name(int(class_id), labels)}{track} {score:.2f}"
        (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
        label_top = max(0, top - text_h - baseline)
        label = (left, label_top, left + text_w, label_top + text_h + baseline)
        layouts.append(BoxLayout(class_colour(int(class_id)), (left, top, int(round(x1)), int(round(y1))),
                                 thickness, text, font_scale, label, text_h))
    return layouts


def trail_dots(detections: np.ndarray, trails: Sequence[np.ndarray] | None, height: int, width: int
               ) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int]]]:
    """Each tracked box's recent centres (x, y) as dots: display rectangles [top, bottom) x [left, right)
    of the box's colour, a line width across."""
    if not trails:
        return []
    size = line_thickness(height, width) + 1
    dots = []
    for row, trail in zip(detections, trails):
        colour = class_colour(int(row[5]))
        for x, y in np.rint(np.asarray(trail, dtype=np.float64).reshape(-1, 2)).astype(int):
            top, left = y - size // 2, x - size // 2
            dots.append(((top, left, top + size, left + size), colour))
    return dots


def draw_detections(image: np.ndarray, detections: np.ndarray, labels: dict[int, str] | None = None,
                    track_ids: np.ndarray | None = None, trails: Sequence[np.ndarray] | None = None) -> None:
    """Draw rows (x0, y0, x1, y1, score, class_id), their track ids and trails onto the RGB uint8
    `image` in place."""
    for (top, left, bottom, right), colour in trail_dots(detections, trails, *image.shape[:2]):
        cv2.rectangle(image, (left, top), (right - 1, bottom - 1), colour, cv2.FILLED)
    for layout in box_layouts(detections, *image.shape[:2], labels, track_ids):
        x0, y0, x1, y1 = layout.corners
        cv2.rectangle(image, (x0, y0), (x1, y1), layout.colour, layout.thickness)
        left, top, right, bottom = layout.label
        cv2.rectangle(image, (left, top), (right, bottom), layout.colour, cv2.FILLED)
        _put_text(image, layout, (left, top))


def _put_text(image: np.ndarray, layout: BoxLayout, label_corner: tuple[int, int],
              colour: tuple[int, int, int] | int = _TEXT_COLOUR) -> None:
    left, top = label_corner
    cv2.putText(image, layout.text, (left, top + layout.text_h), _FONT, layout.font_scale, colour,
                layout.thickness, cv2.LINE_AA)


@dataclasses.dataclass(frozen=True)
class PlaneGeometry:
    """The frame the encoder takes: coded size, the display rotation (degrees counter-clockwise) that
    maps it to what the viewer sees, chroma subsampling (rows, cols) and the colour matrix."""

    height: int
    width: int
    rotation: int
    subsampling: tuple[int, int]
    matrix: ColourMatrix

    @property
    def display_hw(self) -> tuple[int, int]:
        return (self.width, self.height) if self.rotation in (90, 270) else (self.height, self.width)

    def to_coded(self, top: int, left: int, bottom: int, right: int) -> tuple[int, int, int, int]:
        """A display rectangle [top, bottom) x [left, right) as the coded one it comes from (np.rot90)."""
        turns = self.rotation // 90 % 4
        if turns == 1:
            return left, self.width - bottom, right, self.width - top
        if turns == 2:
            return self.height - bottom, self.width - right, self.height - top, self.width - left
        if turns == 3:
            return self.height - right, top, self.height - left, bottom
        return top, left, bottom, right


def _box_bars(layout: BoxLayout) -> list[tuple[int, int, int, int]]:
    """The four edges of cv2.rectangle's outline as display rectangles [top, bottom) x [left, right):
    OpenCV's thick lines reach (t + 1) // 2 pixels either side of the edge (thickness 1: the edge alone)."""
    x0, y0, x1, y1 = layout.corners
    half = 0 if layout.thickness == 1 else (layout.thickness + 1) // 2
    left, right, top, bottom = min(x0, x1) - half, max(x0, x1) + half + 1, min(y0, y1) - half, max(y0, y1) + half + 1
    return [(top, left, top + 2 * half + 1, right), (bottom - 2 * half - 1, left, bottom, right),
            (top, left, bottom, left + 2 * half + 1), (top, right - 2 * half - 1, bottom, right)]


def _fills(geometry: PlaneGeometry, display_rect: tuple[int, int, int, int], yuv: tuple[int, int, int]
           ) -> tuple[Patch, Patch]:
    """A display rectangle filled with one colour: its luma and chroma patches. A chroma sample takes the
    colour when the rectangle touches its block."""
    top, left, bottom, right = geometry.to_coded(*display_rect)
    sy, sx = geometry.subsampling
    c_top, c_left = top // sy, left // sx
    luma = Patch.fill(top, left, bottom - top, right - left, yuv[0])
    chroma = Patch.fill(c_top, c_left, -(-bottom // sy) - c_top, -(-right // sx) - c_left, yuv[1:])
    return luma, chroma


@functools.lru_cache(maxsize=4096)
def _label_patches(text: str, colour: tuple[int, int, int], font_scale: float, thickness: int, text_h: int,
                   size: tuple[int, int], turns: int, matrix: ColourMatrix, subsampling: tuple[int, int],
                   phase: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A label's luma [h, w] and chroma [hc, wc, 2] in coded orientation, rendered once, for a label whose
    coded top-left is at `phase` within its chroma block; chroma is averaged over each block the label
    covers part or all of.

    The text is black and anti-aliased over the box colour: OpenCV blends each pixel towards black by the
    strokes' coverage, so a label pixel is the colour times (1 - coverage), and its Y'CbCr is an affine
    function of the coverage, as is a block's average. So only the coverage is drawn (one uint8 channel,
    `draw_detections`' text in white on black) and looked up: a conversion of every pixel of an RGB label
    cost several times more, and real scores make most labels new. Within a level of converting the
    RGB label (OpenCV rounds each blend)."""
    height, width = size
    coverage = np.zeros((height, width), np.uint8)
    layout = BoxLayout(colour, (0, 0, 0, 0), thickness, text, font_scale, (0, 0, width - 1, height - 1), text_h)
    _put_text(coverage, layout, (0, 0), 255)
    coverage = np.ascontiguousarray(np.rot90(coverage, k=-turns))
    background, ink = matrix.rgb_to_yuv(np.array([colour, _TEXT_COLOUR], np.float32))
    shades = background[0] + np.linspace(0.0, 1.0, 256, dtype=np.float32) * (ink[0] - background[0])
    luma = cv2.LUT(coverage, np.clip(np.rint(shades), 0, 255).astype(np.uint8))
    (sy, sx), (pad_top, pad_left), (rows, cols) = subsampling, phase, coverage.shape
    block_rows, block_cols = -(-(rows + pad_top) // sy), -(-(cols + pad_left) // sx)
    padded = cv2.copyMakeBorder(coverage, pad_top, block_rows * sy - rows - pad_top, pad_left,
                                block_cols * sx - cols - pad_left, cv2.BORDER_CONSTANT, value=0)
    # each block's mean coverage over the label's own pixels in it (OpenCV's area resize of whole blocks
    # counts the padding as zeros: divided by the label's share of each block)
    block_means = cv2.resize(padded.astype(np.float32), (block_cols, block_rows), interpolation=cv2.INTER_AREA)
    shares = np.outer(_share_per_block(block_rows, sy, pad_top, rows), _share_per_block(block_cols, sx, pad_left, cols))
    mean = (block_means / (255.0 * shares))[..., None]
    chroma = np.clip(np.rint(background[1:] + mean * (ink[1:] - background[1:])), 0, 255).astype(np.uint8)
    return luma, chroma


def _share_per_block(blocks: int, size: int, pad: int, length: int) -> np.ndarray:
    """Along one axis: the fraction of each of `blocks` blocks of `size` samples that a run of `length`
    samples starting `pad` samples into the first block covers."""
    counts = np.full(blocks, size, np.float32)
    counts[0] -= pad
    counts[-1] -= blocks * size - length - pad
    return counts / size


def paint_lists(detections: np.ndarray, geometry: PlaneGeometry, labels: dict[int, str] | None = None,
                track_ids: np.ndarray | None = None, trails: Sequence[np.ndarray] | None = None) -> PaintList:
    """What `draw_detections` would draw on the display frame, as patches of the coded YUV planes."""
    luma: list[Patch] = []
    chroma: list[Patch] = []
    turns = geometry.rotation // 90 % 4
    sy, sx = geometry.subsampling
    for rect, colour in trail_dots(detections, trails, *geometry.display_hw):
        dot_luma, dot_chroma = _fills(geometry, rect, geometry.matrix.yuv_code(colour))
        luma.append(dot_luma)
        chroma.append(dot_chroma)
    for layout in box_layouts(detections, *geometry.display_hw, labels, track_ids):
        yuv = geometry.matrix.yuv_code(layout.colour)
        for bar in _box_bars(layout):
            bar_luma, bar_chroma = _fills(geometry, bar, yuv)
            luma.append(bar_luma)
            chroma.append(bar_chroma)
        left, top, right, bottom = layout.label
        c_top, c_left, _, _ = geometry.to_coded(top, left, bottom + 1, right + 1)
        label_luma, label_chroma = _label_patches(layout.text, layout.colour, layout.font_scale, layout.thickness,
                                                  layout.text_h, (bottom + 1 - top, right + 1 - left), turns,
                                                  geometry.matrix, geometry.subsampling, (c_top % sy, c_left % sx))
        luma.append(Patch(c_top, c_left, label_luma))
        chroma.append(Patch(c_top // sy, c_left // sx, label_chroma))
    return PaintList(tuple(luma), tuple(chroma))

