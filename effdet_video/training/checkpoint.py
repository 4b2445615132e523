"""The model a training run starts from: fresh, or an AutoML .h5 checkpoint (fine-tuning).

A checkpoint trained for another class count (COCO's 90, say) loads whole except the class predictor,
which starts fresh with AutoML's prior bias, the way AutoML's fine-tuning skips mismatched variables.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

from effdet_video.configs import ModelConfig
from effdet_video.errors import UserError
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.weights import checkpoint_num_classes, load_automl_h5

CLASS_PREDICTOR_PREFIX = "class_net.predict."


def initial_model(config: ModelConfig, init: Path | None) -> EfficientDet:
    """A model of `config`, from `init` when given (any class count), else freshly initialised."""
    model = EfficientDet(config)
    if init is None:
        return model
    if not Path(init).is_file():
        raise UserError(f"weights file not found: {init}")
    source_classes = checkpoint_num_classes(init, config.num_anchors)
    if source_classes in (None, config.num_classes):  # None: the loader says what is wrong with the file
        load_automl_h5(model, init)
        return model
    source = EfficientDet(dataclasses.replace(config, num_classes=source_classes))
    load_automl_h5(source, init)
    kept = {k: v for k, v in source.state_dict().items() if not k.startswith(CLASS_PREDICTOR_PREFIX)}
    missing, unexpected = model.load_state_dict(kept, strict=False)
    if unexpected or any(not k.startswith(CLASS_PREDICTOR_PREFIX) for k in missing):
        raise RuntimeError(f"fine-tuning load left {missing} unset and {unexpected} unused")
    return model
