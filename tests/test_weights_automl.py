"""Loading AutoML's .h5 weights: parity with AutoML's outputs, round trip through save, helpful errors."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effdet_video.configs import get_model_config
from effdet_video.errors import UserError
from effdet_video.models.build import build_model
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.weights import load_automl_h5, save_automl_h5

FIXTURE = "efficientdet-d0-seed0"
LEVELS = range(3, 8)
# The fixture's outputs are TF float32. With its conditioned weights (BN gammas 2..3) the network amplifies
# rounding: TF's own float64 run of the same .h5 differs from them by up to 0.075 (cls) / 0.036 (box), and
# our float64 run matches TF float64 to 5e-11. So float32 parity is bounded by TF's float32 noise, not by us.
FIXTURE_MAX_ABS = {"cls": 0.1, "box": 0.05}
FIXTURE_MEAN_ABS = 0.01


@pytest.fixture(scope="module")
def fixture_h5(automl_fixtures: Path) -> Path:
    return automl_fixtures / f"{FIXTURE}.h5"


@pytest.fixture(scope="module")
def d0_loaded(fixture_h5: Path) -> EfficientDet:
    return build_model(get_model_config("d0"), fixture_h5, random=False)


def _nchw(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(array).permute(0, 3, 1, 2).contiguous()


def _outputs(model: EfficientDet, x: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        cls_outs, box_outs = model(x)
    return cls_outs + box_outs


def test_d0_matches_automl_fixture(d0_loaded: EfficientDet, automl_fixtures: Path) -> None:
    data = np.load(automl_fixtures / f"{FIXTURE}.npz")
    with torch.no_grad():
        cls_outs, box_outs = d0_loaded(_nchw(data["inputs"]))
    for kind, outputs in (("cls", cls_outs), ("box", box_outs)):
        for level, ours in zip(LEVELS, outputs):
            reference = data[f"{kind}_l{level}"]
            ours = ours.permute(0, 2, 3, 1).numpy()
            assert ours.shape == reference.shape
            error = np.abs(ours - reference)
            assert error.max() < FIXTURE_MAX_ABS[kind], f"{kind}_l{level}: max {error.max():.3e}"
            assert error.mean() < FIXTURE_MEAN_ABS, f"{kind}_l{level}: mean {error.mean():.3e}"
    # The fixture's class predictor was scaled so that the best frame-0 anchor scores exactly 0.98.
    best = max(float(torch.sigmoid(c[0]).max()) for c in cls_outs)
    assert best == pytest.approx(0.98, abs=2e-3)


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
