"""Building a ready-to-run (eval-mode) EfficientDet: AutoML weights from `.h5`, or seeded random weights."""
from __future__ import annotations

import math
import os

import torch
from torch import nn

from ..configs import ModelConfig
from .efficientdet import EfficientDet
from .heads import CLASS_PRIOR_PROBABILITY, predictor_bias
from .weights import load_automl_h5

RANDOM_WEIGHTS_SEED = 0


@torch.no_grad()
def init_random_weights(model: EfficientDet, seed: int = RANDOM_WEIGHTS_SEED) -> None:
    """Deterministic weights (same for a seed on every machine): He-normal convs by fan-out as AutoML
    initialises them, identity BNs, unit fusion weights, the class prior on the class predictor's bias.
    Only for benchmarking: the detections are meaningless."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            out_channels, _, kh, kw = module.weight.shape
            fan_out = kh * kw * out_channels // module.groups
            values = torch.randn(module.weight.shape, generator=generator) * math.sqrt(2.0 / fan_out)
            module.weight.copy_(values)
            if module.bias is not None:
                module.bias.zero_()
        elif isinstance(module, nn.BatchNorm2d):
            module.reset_parameters()
    for name, parameter in model.named_parameters():
        if name.endswith("edge_weights"):
            parameter.fill_(1.0)
    predictor_bias(model.class_net).fill_(-math.log((1 - CLASS_PRIOR_PROBABILITY) / CLASS_PRIOR_PROBABILITY))


def build_model(config: ModelConfig, weights_path: str | os.PathLike[str] | None, random: bool) -> EfficientDet:
    """EfficientDet for `config` in eval mode, with seeded random weights if `random`, else from `weights_path`."""
    model = EfficientDet(config)
    if random:
        init_random_weights(model)
    elif weights_path is None:
        raise ValueError("build_model needs a weights path unless random=True (see resolve_weights)")
    else:
        load_automl_h5(model, weights_path)
    return model.eval()
