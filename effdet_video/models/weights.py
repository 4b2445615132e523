"""Loading and saving AutoML's Keras 2 `.h5` weight files (the layout `model.save_weights('x.h5')` writes).

Every dataset in a file must map to exactly one tensor of the model and vice versa; anything else is a
`UserError` naming the problem (and, for a file of another model size, which model it looks like).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

import h5py
import numpy as np
import torch

from ..configs import get_model_config, model_names
from ..errors import UserError
from .efficientdet import EfficientDet
from .keras_layout import CONV, DEPTHWISE, KerasGroup, KerasWeight, keras_groups

# Root attributes Keras 2 (tf-keras 2.21, as AutoML's fixtures were made with) writes.
KERAS_BACKEND = "tensorflow"
KERAS_VERSION = "2.21.0"
TOP_LEVEL_GROUP = "top_level_model_weights"
# Keras splits a string-list attribute into name0, name1, ... above this size (an HDF5 object-header limit).
HDF5_OBJECT_HEADER_LIMIT = 64512


_CLASS_PREDICTOR_KERNEL = "class-predict/pointwise_kernel:0"


def _to_torch(weight: KerasWeight, array: np.ndarray) -> torch.Tensor:
    if weight.kind == CONV:
        array = array.transpose(3, 2, 0, 1)
    elif weight.kind == DEPTHWISE:
        array = array.transpose(2, 3, 0, 1)
    return torch.from_numpy(np.array(array, order="C"))


def _to_keras(weight: KerasWeight) -> np.ndarray:
    """The tensor as Keras stores it; fp16/fp32/fp64 keep their dtype (h5py has no bfloat16: saved as fp32)."""
    tensor = weight.tensor.detach().cpu()
    if tensor.dtype not in (torch.float16, torch.float32, torch.float64):
        tensor = tensor.float()
    array = tensor.numpy()
    if weight.kind == CONV:
        array = array.transpose(2, 3, 1, 0)
    elif weight.kind == DEPTHWISE:
        array = array.transpose(2, 3, 0, 1)
    return np.array(array, order="C")  # (np.ascontiguousarray would turn WSM scalars into 1-vectors)


def _dataset_shapes(f: h5py.File) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            shapes[name] = tuple(obj.shape)

    f.visititems(visit)
    return shapes


def _guess_model(shapes: dict[str, tuple[int, ...]]) -> tuple[str, list[str]] | None:
    """(description, candidate model names) of the architecture a file's weights belong to, if recognisable."""
    backbones = {path.split("/", 1)[0] for path in shapes if re.fullmatch(r"efficientnet-b\d", path.split("/", 1)[0])}
    widths = {shape[0] for path, shape in shapes.items() if path.endswith("/class_net/class-0/bias:0")}
    outputs = {shape[0] for path, shape in shapes.items() if path.endswith("/class_net/class-predict/bias:0")}
    levels = {int(m.group(1)) for path in shapes if (m := re.search(r"/class-0-bn-(\d+)/gamma:0$", path))}
    if len(backbones) != 1 or len(widths) != 1 or len(outputs) != 1 or not levels:
        return None
    architecture = (backbones.pop(), widths.pop(), max(levels), outputs.pop())
    candidates = []
    for name in model_names():
        config = get_model_config(name)
        if (config.backbone_name, config.fpn_num_filters, config.max_level,
                config.num_anchors * config.num_classes) == architecture:
            candidates.append(config.name)
    backbone, width, max_level, _ = architecture
    description = f"{backbone} backbone, {width} FPN channels, levels up to P{max_level}"
    return description, candidates


def _check_layout(model: EfficientDet, path: Path, groups: list[KerasGroup],
                  shapes: dict[str, tuple[int, ...]]) -> None:
    expected = {group.path(w): w for group in groups for w in group.weights}
    missing = [p for p in expected if p not in shapes]
    unexpected = sorted(p for p in shapes if p not in expected)
    mismatched = [p for p, w in expected.items() if p in shapes and shapes[p] != w.keras_shape]
    if not (missing or unexpected or mismatched):
        return
    model_name = model.config.name
    guess = _guess_model(shapes)
    if guess is not None and guess[1] and model_name not in guess[1]:
        raise UserError(f"{path} holds weights of {' or '.join(guess[1])} ({guess[0]}), "
                        f"not of {model_name}: pick the matching model or weights file")
    if mismatched:
        first = mismatched[0]
        raise UserError(f"{path}: {len(mismatched)} weights have the wrong shape for {model_name}, e.g. {first} "
                        f"is {shapes[first]} but {model_name} needs {expected[first].keras_shape}")
    if missing:
        raise UserError(f"{path}: {len(missing)} weights of {model_name} are missing from the file, "
                        f"e.g. {missing[0]}")
    raise UserError(f"{path}: {len(unexpected)} datasets in the file are not weights of {model_name}, "
                    f"e.g. {unexpected[0]}")


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def load_automl_h5(model: EfficientDet, path: str | os.PathLike[str]) -> None:
    """Fill `model` from an AutoML Keras `.h5` file (all or nothing: the model is untouched on error)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 file (expected an AutoML EfficientDet .h5 checkpoint)")
    groups = keras_groups(model)
    try:
        with h5py.File(path, "r") as f:
            _check_layout(model, path, groups, _dataset_shapes(f))
            values = [(w, _to_torch(w, f[group.path(w)][()])) for group in groups for w in group.weights]
    except UserError:
        raise
    except (OSError, KeyError, ValueError, RuntimeError, TypeError) as error:
        raise UserError(f"{path} is corrupt or truncated ({_first_line(error)})") from error
    with torch.no_grad():
        for weight, value in values:
            weight.tensor.copy_(value)


def _save_string_list(node: h5py.Group, name: str, values: list[str]) -> None:
    """Keras' `save_attributes_to_hdf5_group`: one attribute, or name0, name1, ... chunks past the limit."""
    data = [v.encode("utf8") for v in values]
    array = np.asarray(data)
    chunks = 1
    while any(part.nbytes > HDF5_OBJECT_HEADER_LIMIT for part in np.array_split(array, chunks)):
        chunks += 1
    if chunks == 1:
        node.attrs[name] = data
        return
    for i, part in enumerate(np.array_split(array, chunks)):
        node.attrs[f"{name}{i}"] = part


def save_automl_h5(model: EfficientDet, path: str | os.PathLike[str]) -> None:
    """Write `model`'s weights in the layout of AutoML's `.h5` files, readable by `load_automl_h5` and Keras."""
    groups = keras_groups(model)
    with h5py.File(path, "w") as f:
        _save_string_list(f, "layer_names", [group.name for group in groups])
        f.attrs["backend"] = KERAS_BACKEND.encode("utf8")
        f.attrs["keras_version"] = KERAS_VERSION.encode("utf8")
        for group in sorted(groups, key=lambda g: g.name):
            node = f.create_group(group.name)
            _save_string_list(node, "weight_names", [w.name for w in group.weights])
            for weight in group.weights:
                node.create_dataset(weight.name, data=_to_keras(weight))
        _save_string_list(f.create_group(TOP_LEVEL_GROUP), "weight_names", [])


def checkpoint_num_classes(path: str | os.PathLike[str], num_anchors: int) -> int | None:
    """The class count an AutoML .h5 was trained for, read off its class predictor's output width; None
    when the file cannot tell (unreadable, not EfficientDet), for `load_automl_h5` to explain."""
    widths: list[int] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: widths.append(obj.shape[-1])
                         if isinstance(obj, h5py.Dataset) and name.endswith(_CLASS_PREDICTOR_KERNEL) else None)
    except OSError:
        return None
    if len(widths) != 1 or widths[0] % num_anchors:
        return None
    return widths[0] // num_anchors
