"""ops/colour.py: a colour's codes in each matrix and range against the published values, and the map
back, over whole arrays of any shape (as a label's pixels are converted)."""
from __future__ import annotations

import numpy as np
import pytest

from effdet_video.ops.colour import BT601, BT709, ColourMatrix

PRIMARIES = ((255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (0, 0, 0))


@pytest.mark.parametrize(("matrix", "codes"), [
    (ColourMatrix(*BT709), [(63, 102, 240), (173, 42, 26), (32, 240, 118), (235, 128, 128), (16, 128, 128)]),
    (ColourMatrix(*BT601), [(81, 90, 240), (145, 54, 34), (41, 240, 110), (235, 128, 128), (16, 128, 128)]),
    (ColourMatrix(*BT601, full_range=True), [(76, 85, 255), (150, 44, 21), (29, 255, 107), (255, 128, 128),
                                              (0, 128, 128)]),
])
def test_primaries_have_their_published_codes(matrix: ColourMatrix, codes: list[tuple[int, int, int]]) -> None:
    assert [matrix.yuv_code(rgb) for rgb in PRIMARIES] == codes


@pytest.mark.parametrize("matrix", [ColourMatrix(*BT709), ColourMatrix(*BT601, full_range=True)])
def test_arrays_of_any_shape_convert_and_come_back(matrix: ColourMatrix) -> None:
    rgb = np.random.default_rng(0).integers(0, 256, (7, 9, 11, 3), dtype=np.uint8)
    yuv = matrix.rgb_to_yuv(rgb)
    assert yuv.shape == rgb.shape
    assert np.allclose(yuv[2, 3, 4], matrix.rgb_to_yuv(rgb[2, 3, 4]), atol=1e-4)  # each pixel on its own
    assert np.abs(matrix.yuv_to_rgb(yuv) - rgb).max() < 1e-3
