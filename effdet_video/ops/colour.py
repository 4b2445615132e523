"""Y'CbCr colour matrices (BT.601, BT.709, BT.2020; limited or full range): what an intended RGB colour is
in a video's own YUV, so that boxes drawn straight into the decoded planes show the same colour on every
input, and the way back for checking it.

A stream that does not say which matrix it uses is taken the way players take it (mpv, browsers, VLC):
BT.709 for HD sizes (wider than 1024 or taller than 576), BT.601 below.
"""
from __future__ import annotations

import dataclasses
import functools

import cv2
import numpy as np

# FFmpeg's AVColorSpace and AVColorRange values (libavutil/pixfmt.h), as PyAV reports them.
_KR_KB = {1: (0.2126, 0.0722),                        # BT709
          5: (0.299, 0.114), 6: (0.299, 0.114),       # BT470BG, SMPTE170M (BT.601)
          9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}  # BT2020 NCL, CL
RANGE_FULL = 2  # AVCOL_RANGE_JPEG
BT601 = (0.299, 0.114)
BT709 = (0.2126, 0.0722)


@dataclasses.dataclass(frozen=True)
class ColourMatrix:
    """R'G'B' <-> Y'CbCr: luma weights kr, kb and whether codes use the full 0-255 range."""

    kr: float
    kb: float
    full_range: bool = False

    @classmethod
    def of_stream(cls, colorspace: int, color_range: int, width: int, height: int,
                  pix_fmt: str = "") -> ColourMatrix:
        """The matrix a player uses for a stream tagged `colorspace`/`color_range` (0/2: untagged)."""
        kr, kb = _KR_KB.get(int(colorspace or 0)) or (BT709 if width > 1024 or height > 576 else BT601)
        full = int(color_range or 0) == RANGE_FULL or pix_fmt.startswith("yuvj")
        return cls(kr, kb, full)

    def _scales(self) -> tuple[float, float, float]:
        """(luma offset, luma span, chroma span) in 8-bit codes."""
        return (0.0, 255.0, 255.0) if self.full_range else (16.0, 219.0, 224.0)

    def rgb_to_yuv(self, rgb: np.ndarray) -> np.ndarray:
        """RGB [..., 3] in 0-255 -> float32 Y, Cb, Cr codes [..., 3] (unrounded). One affine map, applied by
        OpenCV's `transform`: a label's pixels in one call rather than a dozen numpy passes over float64
        (float32 is within 2e-5 of a code, which moves a rounding only that close to a tie)."""
        rgb = np.asarray(rgb)
        return cv2.transform(rgb.reshape(-1, 1, 3).astype(np.float32), self._forward()).reshape(rgb.shape)

    @functools.cache
    def _forward(self) -> np.ndarray:
        """The 3x4 affine map of rgb_to_yuv: luma Y' = kr R' + kg G' + kb B', Pb = (B' - Y') / (2 (1 - kb)),
        Pr = (R' - Y') / (2 (1 - kr)), scaled to the range's codes, on RGB in 0-255."""
        kr, kb = self.kr, self.kb
        kg = 1.0 - kr - kb
        luma = np.array([kr, kg, kb])
        pb = (np.array([0.0, 0.0, 1.0]) - luma) / (2.0 * (1.0 - kb))
        pr = (np.array([1.0, 0.0, 0.0]) - luma) / (2.0 * (1.0 - kr))
        offset, luma_span, chroma_span = self._scales()
        linear = np.stack((luma_span * luma, chroma_span * pb, chroma_span * pr)) / 255.0
        return np.hstack((linear, np.array([[offset], [128.0], [128.0]]))).astype(np.float32)

    def yuv_to_rgb(self, yuv: np.ndarray) -> np.ndarray:
        """Y, Cb, Cr codes [..., 3] -> float RGB [..., 3] in 0-255, clipped."""
        yuv = np.asarray(yuv, dtype=np.float64)
        offset, luma_span, chroma_span = self._scales()
        luma = (yuv[..., 0] - offset) / luma_span
        pb, pr = (yuv[..., 1] - 128.0) / chroma_span, (yuv[..., 2] - 128.0) / chroma_span
        red = luma + 2.0 * (1.0 - self.kr) * pr
        blue = luma + 2.0 * (1.0 - self.kb) * pb
        green = (luma - self.kr * red - self.kb * blue) / (1.0 - self.kr - self.kb)
        return np.clip(np.stack((red, green, blue), -1) * 255.0, 0.0, 255.0)

    @functools.cache
    def yuv_code(self, rgb: tuple[int, int, int]) -> tuple[int, int, int]:
        """One colour's rounded 8-bit Y, Cb, Cr (a few colours, asked for every box of every frame)."""
        return tuple(int(v) for v in np.clip(np.rint(self.rgb_to_yuv(np.array(rgb))), 0, 255))
