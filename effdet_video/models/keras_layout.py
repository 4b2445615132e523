"""The Keras name, layout and order of every EfficientDet tensor, as AutoML's TF2 model saves them to `.h5`.

Keras writes one HDF5 group per top-level layer (backbone, resample_pN, fpn_cells, class_net, box_net); each
holds its weights at `<group>/<weight name>` and lists them, in load order, in the group's `weight_names`
attribute. Load order is all trainable weights of the layer (depth-first, in attribute-creation order),
then all non-trainable ones (BN moving statistics), which `KerasLayout.groups` reproduces.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import torch
from torch import nn

from .bifpn import FpnNode, ResampleFeatureMap
from .efficientdet import BACKBONE_MAX_LEVEL, EfficientDet
from .efficientnet import EfficientNetFeatures, MBConvBlock
from .heads import PredictionHead
from .layers import SeparableConv2d

# How a torch tensor is stored by Keras.
CONV = "conv"            # Conv2D kernel HWIO  <-> torch OIHW
DEPTHWISE = "depthwise"  # DepthwiseConv2D kernel HWC1 <-> torch C1HW
PLAIN = "plain"          # biases, BN vectors, WSM scalars: same layout


@dataclasses.dataclass(frozen=True)
class KerasWeight:
    name: str                # Keras weight name, e.g. 'class_net/class-0/bias:0'
    tensor: torch.Tensor     # shares storage with the model's parameter / buffer
    kind: str                # CONV, DEPTHWISE or PLAIN
    trainable: bool

    @property
    def keras_shape(self) -> tuple[int, ...]:
        shape = tuple(self.tensor.shape)
        if self.kind == CONV:
            return (shape[2], shape[3], shape[1], shape[0])
        if self.kind == DEPTHWISE:
            return (shape[2], shape[3], shape[0], shape[1])
        return shape


@dataclasses.dataclass(frozen=True)
class KerasGroup:
    name: str
    weights: tuple[KerasWeight, ...]  # Keras load order

    def path(self, weight: KerasWeight) -> str:
        return f"{self.name}/{weight.name}"


def _w(name: str, tensor: torch.Tensor, kind: str = PLAIN, trainable: bool = True) -> KerasWeight:
    return KerasWeight(f"{name}:0", tensor.detach(), kind, trainable)


def _conv(prefix: str, conv: nn.Conv2d) -> Iterator[KerasWeight]:
    yield _w(f"{prefix}/kernel", conv.weight, CONV)
    if conv.bias is not None:
        yield _w(f"{prefix}/bias", conv.bias)


def _depthwise(prefix: str, conv: nn.Conv2d) -> Iterator[KerasWeight]:
    yield _w(f"{prefix}/depthwise_kernel", conv.weight, DEPTHWISE)


def _conv3x3(prefix: str, conv: nn.Module) -> Iterator[KerasWeight]:
    """A Keras SeparableConv2D (depthwise, pointwise, bias) or Conv2D (kernel, bias)."""
    if isinstance(conv, SeparableConv2d):
        yield from _depthwise(prefix, conv.depthwise)
        yield _w(f"{prefix}/pointwise_kernel", conv.pointwise.weight, CONV)
        if conv.pointwise.bias is not None:
            yield _w(f"{prefix}/bias", conv.pointwise.bias)
    else:
        yield from _conv(prefix, conv)


def _bn(prefix: str, bn: nn.BatchNorm2d) -> Iterator[KerasWeight]:
    yield _w(f"{prefix}/gamma", bn.weight)
    yield _w(f"{prefix}/beta", bn.bias)
    yield _w(f"{prefix}/moving_mean", bn.running_mean, trainable=False)
    yield _w(f"{prefix}/moving_variance", bn.running_var, trainable=False)


def _numbered(base: str) -> Iterator[str]:
    """Keras' per-layer names: base, base_1, base_2, ..."""
    yield base
    i = 1
    while True:
        yield f"{base}_{i}"
        i += 1


def _mbconv(prefix: str, block: MBConvBlock) -> Iterator[KerasWeight]:
    conv_names, bn_names = _numbered("conv2d"), _numbered("tpu_batch_normalization")
    if block.expand_conv is not None:
        yield from _conv(f"{prefix}/{next(conv_names)}", block.expand_conv)
        yield from _bn(f"{prefix}/{next(bn_names)}", block.bn0)
    yield from _depthwise(f"{prefix}/depthwise_conv2d", block.depthwise_conv)
    yield from _bn(f"{prefix}/{next(bn_names)}", block.bn1)
    yield from _conv(f"{prefix}/se/conv2d", block.se.reduce)
    yield from _conv(f"{prefix}/se/conv2d_1", block.se.expand)
    yield from _conv(f"{prefix}/{next(conv_names)}", block.project_conv)
    yield from _bn(f"{prefix}/{next(bn_names)}", block.bn2)


def _backbone(backbone: EfficientNetFeatures) -> Iterator[KerasWeight]:
    # AutoML's Model creates its block list before the stem, so the blocks come first.
    for i, block in enumerate(backbone.blocks):
        yield from _mbconv(f"{backbone.name}/blocks_{i}", block)
    yield from _conv(f"{backbone.name}/stem/conv2d", backbone.stem.conv)
    yield from _bn(f"{backbone.name}/stem/tpu_batch_normalization", backbone.stem.bn)


def _resample(prefix: str, resample: ResampleFeatureMap) -> Iterator[KerasWeight]:
    if resample.conv is not None:
        yield from _conv(f"{prefix}/conv2d", resample.conv)
    if resample.bn is not None:
        yield from _bn(f"{prefix}/bn", resample.bn)


def _fpn_node(prefix: str, node: FpnNode, num_feats: int) -> Iterator[KerasWeight]:
    """`num_feats` is how many feature maps exist when the node runs: AutoML's layer-name suffix."""
    if node.edge_weights is not None:
        for k, name in zip(range(len(node.inputs_offsets)), _numbered("WSM")):
            yield _w(f"{prefix}/{name}", node.edge_weights.detach()[k])
    for i, (offset, resample) in enumerate(zip(node.inputs_offsets, node.resample)):
        yield from _resample(f"{prefix}/resample_{i}_{offset}_{num_feats}", resample)
    yield from _conv3x3(f"{prefix}/op_after_combine{num_feats}/conv", node.conv)
    yield from _bn(f"{prefix}/op_after_combine{num_feats}/bn", node.bn)


def _fpn_cells(model: EfficientDet) -> Iterator[KerasWeight]:
    num_levels = len(model.config.levels)
    for c, cell in enumerate(model.fpn.cells):
        for i, node in enumerate(cell.nodes):
            yield from _fpn_node(f"fpn_cells/cell_{c}/fnode{i}", node, num_levels + i)


def _head(group: str, prefix: str, head: PredictionHead, levels: range) -> Iterator[KerasWeight]:
    for i, conv in enumerate(head.convs):
        yield from _conv3x3(f"{group}/{prefix}-{i}", conv)
    for i, bns in enumerate(head.bns):
        for level, bn in zip(levels, bns):
            yield from _bn(f"{group}/{prefix}-{i}-bn-{level}", bn)
    yield from _conv3x3(f"{group}/{prefix}-predict", head.predict)


def _keras_order(weights: Iterator[KerasWeight]) -> tuple[KerasWeight, ...]:
    listed = list(weights)
    return tuple(w for w in listed if w.trainable) + tuple(w for w in listed if not w.trainable)


def keras_groups(model: EfficientDet) -> list[KerasGroup]:
    """Every weight of `model`, grouped and ordered as AutoML's Keras model saves them (root `layer_names`)."""
    levels = model.config.levels
    groups = [KerasGroup(model.backbone.name, _keras_order(_backbone(model.backbone)))]
    for level, resample in enumerate(model.extra_levels, BACKBONE_MAX_LEVEL + 1):
        name = f"resample_p{level}"
        groups.append(KerasGroup(name, _keras_order(_resample(name, resample))))
    groups.append(KerasGroup("fpn_cells", _keras_order(_fpn_cells(model))))
    groups.append(KerasGroup("class_net", _keras_order(_head("class_net", "class", model.class_net, levels))))
    groups.append(KerasGroup("box_net", _keras_order(_head("box_net", "box", model.box_net, levels))))
    return groups
