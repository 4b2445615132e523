"""Class and box prediction heads (AutoML's ClassNet / BoxNet): conv weights shared by every level, one BN
per (repeat, level), a final predictor conv. Output channel = anchor * outputs_per_anchor + k."""
from __future__ import annotations

import math

import torch
from torch import nn

from .layers import activation, batch_norm, conv3x3

CLASS_PRIOR_PROBABILITY = 0.01


class PredictionHead(nn.Module):
    def __init__(self, num_filters: int, num_outputs: int, repeats: int, num_levels: int, separable_conv: bool,
                 act_type: str, bn_eps: float) -> None:
        super().__init__()
        self.convs = nn.ModuleList(conv3x3(separable_conv, num_filters, num_filters) for _ in range(repeats))
        self.bns = nn.ModuleList(
            nn.ModuleList(batch_norm(num_filters, bn_eps) for _ in range(num_levels)) for _ in range(repeats)
        )
        self.predict = conv3x3(separable_conv, num_filters, num_outputs)
        self.act = activation(act_type)

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        outputs = []
        for level_index, x in enumerate(feats):
            for conv, bns in zip(self.convs, self.bns):
                x = self.act(bns[level_index](conv(x)))
            outputs.append(self.predict(x))
        return outputs


def predictor_bias(head: PredictionHead) -> torch.Tensor:
    """The bias of the head's final conv (separable or plain)."""
    predict = head.predict
    return predict.pointwise.bias if hasattr(predict, "pointwise") else predict.bias


def class_head(num_filters: int, num_anchors: int, num_classes: int, repeats: int, num_levels: int,
               separable_conv: bool, act_type: str, bn_eps: float) -> PredictionHead:
    head = PredictionHead(num_filters, num_anchors * num_classes, repeats, num_levels, separable_conv, act_type,
                          bn_eps)
    with torch.no_grad():
        predictor_bias(head).fill_(-math.log((1 - CLASS_PRIOR_PROBABILITY) / CLASS_PRIOR_PROBABILITY))
    return head


def box_head(num_filters: int, num_anchors: int, repeats: int, num_levels: int, separable_conv: bool,
             act_type: str, bn_eps: float) -> PredictionHead:
    return PredictionHead(num_filters, num_anchors * 4, repeats, num_levels, separable_conv, act_type, bn_eps)
