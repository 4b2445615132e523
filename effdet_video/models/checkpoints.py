"""Where a model's weights come from: an explicit path, the local cache, or AutoML's published `.h5` files."""
from __future__ import annotations

import os
import tempfile
import urllib.error
import urllib.request
from importlib import resources
from pathlib import Path

import h5py
from tqdm import tqdm

from ..configs import get_model_config
from ..errors import UserError

# AutoML publishes a Keras .h5 for every COCO model D0..D7x (efficientdet/README.md, "coco2" checkpoints).
CHECKPOINT_BASE_URL = "https://storage.googleapis.com/cloud-tpu-checkpoints/efficientdet/coco2"
HOME_ENV = "EFFDET_VIDEO_HOME"
DEFAULT_HOME = "~/.cache/effdet-video"
# Trained here on synthetic scenes (effdet_video/demo/demo_model.py) and shipped inside the package.
DEMO_MODEL = "efficientdet-demo"
_DOWNLOAD_TIMEOUT_S = 60
_CHUNK_BYTES = 1 << 20


def weights_home() -> Path:
    return Path(os.environ.get(HOME_ENV) or DEFAULT_HOME).expanduser()


def checkpoint_url(model_name: str) -> str:
    return f"{CHECKPOINT_BASE_URL}/{model_name}.h5"


def demo_weights() -> Path:
    return Path(str(resources.files("effdet_video").joinpath("assets", f"{DEMO_MODEL}.h5")))


def packaged_weights(model_name: str) -> Path | None:
    """The weights shipped inside the package for `model_name`, if any (only the demo model has them)."""
    return demo_weights() if get_model_config(model_name).name == DEMO_MODEL else None


def _download(url: str, target: Path) -> None:
    """Fetch `url` to `target` via a temp file in the same folder, renamed only once complete and valid."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length else None
            received = 0
            with tqdm(total=total, unit="B", unit_scale=True, desc=target.name, leave=False) as progress:
                while chunk := response.read(_CHUNK_BYTES):
                    out.write(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
        if total is not None and received != total:
            raise OSError(f"download ended after {received} of {total} bytes")
        if not h5py.is_hdf5(tmp):
            raise OSError("the download is not an HDF5 file")
        os.replace(tmp, target)
    except (urllib.error.URLError, OSError, ValueError) as error:
        tmp.unlink(missing_ok=True)
        reason = getattr(error, "reason", None) or error
        raise UserError(f"could not download {url} ({reason}); download it yourself and save it as {target}") from None


def resolve_weights(model_name: str, weights: str | os.PathLike[str] | None) -> Path:
    """The `.h5` file to load for `model_name`: `weights` if given, the packaged file of the demo model, else
    the cached (or downloaded) AutoML file."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise UserError(f"weights file not found: {path}")
        return path
    packaged = packaged_weights(model_name)
    if packaged is not None:
        return packaged
    name = get_model_config(model_name).name
    target = weights_home() / f"{name}.h5"
    if not target.is_file():
        _download(checkpoint_url(name), target)
    return target
