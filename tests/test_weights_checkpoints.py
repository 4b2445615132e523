"""Finding weights: explicit path, cache, download (file:// and a mocked offline urllib; no network)."""
from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import h5py
import numpy as np
import pytest

from effdet_video.errors import UserError
from effdet_video.models import checkpoints
from effdet_video.models.checkpoints import checkpoint_url, resolve_weights


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "home"
    monkeypatch.setenv(checkpoints.HOME_ENV, str(folder))
    return folder


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file:// stand-in for AutoML's bucket."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    monkeypatch.setattr(checkpoints, "CHECKPOINT_BASE_URL", folder.as_uri())
    return folder


def _no_network(*args: object, **kwargs: object) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


def test_published_url() -> None:
    assert checkpoint_url("efficientdet-d7x") == (
        "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco2/efficientdet-d7x.h5")


def test_explicit_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.h5"
    path.write_bytes(b"x")
    assert resolve_weights("d0", str(path)) == path
    with pytest.raises(UserError, match="weights file not found: .*missing.h5"):
        resolve_weights("d0", str(tmp_path / "missing.h5"))


def test_cached_file_is_used_without_network(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home.mkdir()
    (home / "efficientdet-d3.h5").write_bytes(b"cached")
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    assert resolve_weights("d3", None) == home / "efficientdet-d3.h5"
    assert resolve_weights("efficientdet-d3", None) == home / "efficientdet-d3.h5"


def test_download_into_cache(home: Path, mirror: Path) -> None:
    with h5py.File(mirror / "efficientdet-d0.h5", "w") as f:
        f.create_dataset("w", data=np.arange(5, dtype=np.float32))
    path = resolve_weights("d0", None)
    assert path == home / "efficientdet-d0.h5"
    assert path.read_bytes() == (mirror / "efficientdet-d0.h5").read_bytes()
    assert sorted(p.name for p in home.iterdir()) == ["efficientdet-d0.h5"]


def test_download_that_is_not_hdf5_is_discarded(home: Path, mirror: Path) -> None:
    (mirror / "efficientdet-d1.h5").write_text("<html>quota exceeded</html>")
    with pytest.raises(UserError, match="not an HDF5 file"):
        resolve_weights("d1", None)
    assert list(home.iterdir()) == []


def test_offline_names_url_and_destination(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(urllib.request, "urlopen", _no_network)
    with pytest.raises(UserError) as info:
        resolve_weights("d2", None)
    message = str(info.value)
    assert "\n" not in message
    assert checkpoint_url("efficientdet-d2") in message
    assert str(home / "efficientdet-d2.h5") in message
    assert "name resolution" in message
    assert list(home.iterdir()) == []


def test_unknown_model_name(home: Path) -> None:
    with pytest.raises(UserError, match="unknown model 'd9'"):
        resolve_weights("d9", None)
