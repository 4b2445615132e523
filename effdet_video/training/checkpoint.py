"""The model a training run starts from: fresh, or an AutoML .h5 checkpoint (fine-tuning).

A checkpoint trained for another class count (COCO's 90, say) loads whole except the class predictor,
which starts fresh with AutoML's prior bias, the way AutoML's fine-tuning skips mismatched variables.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py

from effdet_video.configs import ModelConfig
from effdet_video.errors import UserError
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.weights import load_automl_h5

CLASS_PREDICTOR_KERNEL = "class-predict/pointwise_kernel:0"
CLASS_PREDICTOR_PREFIX = "class_net.predict."


def checkpoint_num_classes(path: Path, num_anchors: int) -> int:
    """The class count an AutoML .h5 was trained for, read off its class predictor's output width."""
    widths: list[int] = []
    try:
        with h5py.File(path, "r") as f:
            f.visititems(lambda name, obj: widths.append(obj.shape[-1])
                         if isinstance(obj, h5py.Dataset) and name.endswith(CLASS_PREDICTOR_KERNEL) else None)
    except OSError as error:
        raise UserError(f"cannot read weights {path}: {error}") from None
    if len(widths) != 1 or widths[0] % num_anchors:
        raise UserError(f"{path} has no EfficientDet class predictor (not an AutoML EfficientDet .h5?)")
    return widths[0] // num_anchors


def initial_model(config: ModelConfig, init: Path | None) -> EfficientDet:
    """A model of `config`, from `init` when given (any class count), else freshly initialised."""
    model = EfficientDet(config)
    if init is None:
        return model
    if not Path(init).is_file():
        raise UserError(f"weights file not found: {init}")
    source_classes = checkpoint_num_classes(init, config.num_anchors)
    if source_classes == config.num_classes:
        load_automl_h5(model, init)
        return model
    source = EfficientDet(dataclasses.replace(config, num_classes=source_classes))
    load_automl_h5(source, init)
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith(CLASS_PREDICTOR_PREFIX)}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith(CLASS_PREDICTOR_PREFIX) for k in missing):
        raise RuntimeError(f"fine-tuning load left {missing} unset and {unexpected} unused")
    return model
