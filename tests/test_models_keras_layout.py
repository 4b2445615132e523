"""The Keras names of our tensors: identical to AutoML's .h5 listing for D0, consistent for every size."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effdet_video.configs import get_model_config
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.keras_layout import keras_groups
from tests.support.automl_fixture import SEED1


def _layout(name: str) -> list[tuple[str, tuple[int, ...]]]:
    with torch.device("meta"):
        model = EfficientDet(get_model_config(name))
    return [(group.path(w), w.keras_shape) for group in keras_groups(model) for w in group.weights]


def test_d0_layout_is_automl_listing(automl_fixtures: Path) -> None:
    """Every dataset path, shape and the Keras load order, against the fixture's listing of the .h5."""
    lines = (automl_fixtures / f"{SEED1}.weights.txt").read_text().splitlines()[1:]
    expected = []
    for line in lines:
        path, shape = line.split("\t")
        expected.append((path, () if shape == "scalar" else tuple(int(v) for v in shape.split("x"))))
    assert _layout("d0") == expected


@pytest.mark.parametrize("name, last_block, top_level, has_wsm, total", [
    ("d1", "blocks_22", 7, True, 912),
    ("d6", "blocks_44", 7, False, 1565),
    ("d7x", "blocks_54", 8, False, 1902),
])
def test_layout_of_other_sizes(name: str, last_block: str, top_level: int, has_wsm: bool, total: int) -> None:
    paths = [path for path, _ in _layout(name)]
    assert len(paths) == len(set(paths)) == total
    backbone = get_model_config(name).backbone_name
    assert any(p.startswith(f"{backbone}/{backbone}/{last_block}/") for p in paths)
    assert not any(f"blocks_{int(last_block[7:]) + 1}/" in p for p in paths)
    assert f"class_net/class_net/class-0-bn-{top_level}/gamma:0" in paths
    assert not any(f"-bn-{top_level + 1}/" in p for p in paths)
    assert any("/WSM" in p for p in paths) == has_wsm
    extra_groups = {p.split("/")[0] for p in paths if p.startswith("resample_p")}
    # resample_p7 (and p8) have no weights: P6 already has the FPN width.
    assert extra_groups == {"resample_p6"}
