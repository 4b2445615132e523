"""Loading AutoML's .h5 weights: the network's parity with AutoML's float64 and float32 outputs on the
efficientdet-d0-seed1 fixture, round trip through save, helpful errors."""
from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effdet_video.configs import NmsConfig, get_model_config
from effdet_video.errors import UserError
from effdet_video.models.build import build_model
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.weights import load_automl_h5, save_automl_h5
from effdet_video.ops.anchors import generate_anchors
from effdet_video.ops.postprocess import detect, pre_nms
from tests.support.automl_fixture import (
    LEVELS,
    NMS_PREFIXES,
    SEED1,
    as_stored,
    assert_same_detections,
    load_npz,
    reference_rows,
)

# TF's own float32 run is within 2.6e-5 of its float64 run on this fixture (its sidecar), so both bounds
# leave room only for rounding: a wrong operation, order or constant moves outputs far more.
FLOAT64_ATOL = 1e-6
FLOAT32_ATOL = 1e-4


@pytest.fixture(scope="module")
def fixture_h5(automl_fixtures: Path) -> Path:
    return automl_fixtures / f"{SEED1}.h5"


@pytest.fixture(scope="module")
def seed1(automl_fixtures: Path) -> dict[str, np.ndarray]:
    return load_npz(automl_fixtures, SEED1)


@pytest.fixture(scope="module")
def d0_loaded(fixture_h5: Path) -> EfficientDet:
    return build_model(get_model_config("d0"), fixture_h5, random=False)


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def _outputs(model: EfficientDet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        cls_outs, box_outs = model(x)
    return cls_outs + box_outs


def _keys() -> list[str]:
    return [f"{kind}_l{level}" for kind in ("cls", "box") for level in LEVELS]


@pytest.fixture(scope="module")
def float64_outputs(d0_loaded: EfficientDet, seed1: dict[str, np.ndarray]) -> list[torch.Tensor]:
    """The network in float64 on AutoML's network inputs widened to float64, as AutoML's float64 run."""
    model = copy.deepcopy(d0_loaded).double()
    return _outputs(model, _nchw(seed1["inputs"]).double())


def _worst_errors(outputs: list[torch.Tensor], data: dict[str, np.ndarray], suffix: str) -> dict[str, float]:
    errors = {}
    for key, ours in zip(_keys(), outputs):
        ours = as_stored(ours, data, key)
        assert ours.shape == data[key + suffix].shape, key
        errors[key] = float(np.abs(ours - data[key + suffix]).max())
    return errors


def test_float64_network_matches_automl_float64(float64_outputs, seed1) -> None:
    errors = _worst_errors(float64_outputs, seed1, "_f64")
    assert max(errors.values()) <= FLOAT64_ATOL, errors


def test_float32_network_matches_automl_float32(d0_loaded, seed1) -> None:
    errors = _worst_errors(_outputs(d0_loaded, _nchw(seed1["inputs"])), seed1, "")
    assert max(errors.values()) <= FLOAT32_ATOL, errors


def test_float64_pre_nms_matches_automl_over_every_anchor(float64_outputs, seed1) -> None:
    """Every anchor's best class and score, also at the class-map positions the fixture does not store.
    Our post-processing is float32 (sigmoid, box decoding), AutoML's float64 here: scores to 7e-8 and
    boxes to 1.2e-4 px measured."""
    config = get_model_config("d0")
    levels = len(LEVELS)
    scores, classes, boxes = pre_nms(float64_outputs[:levels], float64_outputs[levels:], generate_anchors(config),
                                     config.num_classes)
    np.testing.assert_array_equal(classes.numpy(), seed1["pre_nms_classes_f64"])
    np.testing.assert_allclose(scores.numpy(), seed1["pre_nms_scores_f64"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(boxes.numpy(), seed1["pre_nms_boxes_f64"], rtol=0, atol=1e-3)


@pytest.mark.parametrize("method", list(NMS_PREFIXES))
def test_detections_from_float64_outputs_match_automl_float64(float64_outputs, seed1, method) -> None:
    """AutoML's float64 detections: its NMS runs in float32 on float32 copies of the float64 pre-NMS
    boxes and scores, as ours does."""
    config = get_model_config("d0")
    levels = len(LEVELS)
    detections, num_valid = detect(float64_outputs[:levels], float64_outputs[levels:], generate_anchors(config),
                                   torch.from_numpy(seed1["image_scales"]), config.image_size,
                                   NmsConfig(method=method))
    prefix = NMS_PREFIXES[method]
    np.testing.assert_array_equal(num_valid.numpy(), seed1[f"{prefix}valid_f64"])
    for frame in range(len(num_valid)):
        ours = detections[frame, : num_valid[frame]].numpy().astype(np.float64)
        assert_same_detections(ours, reference_rows(seed1, prefix, frame, "_f64"), box_px=0.5, score=1e-4)


def test_round_trip_is_exact(d0_loaded: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    saved = tmp_path / "d0.h5"
    save_automl_h5(d0_loaded, saved)
    reloaded = EfficientDet(get_model_config("d0")).eval()
    load_automl_h5(reloaded, saved)
    x = torch.randn(1, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    for ours, ref in zip(_outputs(reloaded, x), _outputs(d0_loaded, x)):
        assert torch.equal(ours, ref)
    # Same datasets, values and Keras attributes as AutoML's file.
    with h5py.File(saved) as ours, h5py.File(fixture_h5) as ref:
        assert list(ours.attrs["layer_names"]) == list(ref.attrs["layer_names"])
        assert list(ours.keys()) == list(ref.keys())
        for group in ref:
            assert list(ours[group].attrs["weight_names"]) == list(ref[group].attrs["weight_names"])
        paths: list[str] = []
        ref.visititems(lambda name, obj: paths.append(name) if isinstance(obj, h5py.Dataset) else None)
        for path in paths:
            assert np.array_equal(ours[path][()], ref[path][()]), path


def _load_error(model: EfficientDet, path: Path) -> str:
    with pytest.raises(UserError) as info:
        load_automl_h5(model, path)
    message = str(info.value)
    assert "\n" not in message
    return message


@pytest.fixture
def d0_blank() -> EfficientDet:
    return EfficientDet(get_model_config("d0")).eval()


def test_missing_file(d0_blank: EfficientDet, tmp_path: Path) -> None:
    assert "not found" in _load_error(d0_blank, tmp_path / "nope.h5")


def test_not_hdf5(d0_blank: EfficientDet, tmp_path: Path) -> None:
    path = tmp_path / "weights.h5"
    path.write_text("<html>404 Not Found</html>")
    assert "not an HDF5 file" in _load_error(d0_blank, path)


def test_truncated_file(d0_blank: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    path = tmp_path / "truncated.h5"
    path.write_bytes(fixture_h5.read_bytes()[: fixture_h5.stat().st_size // 2])
    assert "corrupt or truncated" in _load_error(d0_blank, path)


def test_file_of_another_model_size(d0_blank: EfficientDet, tmp_path: Path) -> None:
    path = tmp_path / "d1.h5"
    save_automl_h5(build_model(get_model_config("d1"), None, random=True), path)
    message = _load_error(d0_blank, path)
    assert "efficientdet-d1" in message and "efficientnet-b1" in message and "88 FPN channels" in message
    assert "not of efficientdet-d0" in message


def _edited_copy(fixture_h5: Path, tmp_path: Path) -> Path:
    path = tmp_path / "edited.h5"
    shutil.copyfile(fixture_h5, path)
    return path


def test_missing_weight(d0_blank: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    path = _edited_copy(fixture_h5, tmp_path)
    victim = "fpn_cells/fpn_cells/cell_1/fnode3/WSM_1:0"
    with h5py.File(path, "r+") as f:
        del f[victim]
    message = _load_error(d0_blank, path)
    assert "1 weights of efficientdet-d0 are missing" in message and victim in message


def test_unexpected_weight(d0_blank: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    path = _edited_copy(fixture_h5, tmp_path)
    extra = "box_net/box_net/box-3/bias:0"
    with h5py.File(path, "r+") as f:
        f.create_dataset(extra, data=np.zeros(64, np.float32))
    message = _load_error(d0_blank, path)
    assert "1 datasets in the file are not weights of efficientdet-d0" in message and extra in message


def test_wrong_shape(d0_blank: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    path = _edited_copy(fixture_h5, tmp_path)
    victim = "class_net/class_net/class-1/pointwise_kernel:0"
    with h5py.File(path, "r+") as f:
        del f[victim]
        f.create_dataset(victim, data=np.zeros((1, 1, 64, 32), np.float32))
    message = _load_error(d0_blank, path)
    assert victim in message and "(1, 1, 64, 32)" in message and "(1, 1, 64, 64)" in message


def test_failed_load_leaves_model_untouched(d0_blank: EfficientDet, fixture_h5: Path, tmp_path: Path) -> None:
    before = {k: v.clone() for k, v in d0_blank.state_dict().items()}
    path = _edited_copy(fixture_h5, tmp_path)
    with h5py.File(path, "r+") as f:
        del f["box_net/box_net/box-predict/bias:0"]
    _load_error(d0_blank, path)
    assert all(torch.equal(before[k], v) for k, v in d0_blank.state_dict().items())


def _oracle_models() -> list[str]:
    """AutoML-generated oracles (efficientdet-dN.h5/.npz[/.f64.npz]), only where EFFDET_VIDEO_ORACLE_DIR is set."""
    folder = os.environ.get("EFFDET_VIDEO_ORACLE_DIR")
    if not folder:
        return []
    return sorted(p.name[: -len(".h5")] for p in Path(folder).glob("efficientdet-*.h5")
                  if p.with_suffix(".npz").is_file())


@pytest.mark.skipif(not _oracle_models(), reason="EFFDET_VIDEO_ORACLE_DIR with AutoML oracle files not set")
@pytest.mark.parametrize("name", _oracle_models())
def test_automl_oracle(name: str) -> None:
    """Float64 parity with AutoML run in float64 (tight); float32 only within TF float32's own noise, which these
    conditioned weights amplify to ~1% of the output range for the largest models."""
    base = Path(os.environ["EFFDET_VIDEO_ORACLE_DIR"]) / name
    data = np.load(base.with_suffix(".npz"))
    size = tuple(int(v) for v in data["image_size"])
    model = build_model(get_model_config(name, image_size=size), base.with_suffix(".h5"), random=False)
    x = _nchw(data["inputs"])
    kinds_levels = [(kind, level) for kind in ("cls", "box") for level in get_model_config(name).levels]
    for (kind, level), ours in zip(kinds_levels, _outputs(model, x)):
        reference = data[f"{kind}_l{level}"]
        tolerance = 0.03 * np.abs(reference).max()
        assert np.abs(ours.permute(0, 2, 3, 1).numpy() - reference).max() < tolerance, f"{kind}_l{level}"
    f64 = base.parent / f"{name}.f64.npz"
    if f64.is_file():
        data64 = np.load(f64)
        for (kind, level), ours in zip(kinds_levels, _outputs(model.double(), x.double())):
            error = np.abs(ours.permute(0, 2, 3, 1).numpy() - data64[f"{kind}_l{level}"]).max()
            assert error < 1e-8, f"float64 {kind}_l{level}: {error:.3e}"
