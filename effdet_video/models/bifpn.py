"""BiFPN feature network, as AutoML's `tf2/efficientdet_keras.py` (FNode, ResampleFeatureMap) and
`tf2/fpn_configs.py` (bifpn_config) define it.

Feature lists are indexed by "offset": offsets 0..L-1 are the cell's inputs (levels min..max), each node
appends one more. Resampling targets the spatial size of the cell input at the node's level.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2dSame, MaxPool2dSame, activation, batch_norm, conv3x3

WEIGHT_METHODS = ("fastattn", "attn", "sum")
_FASTATTN_EPS = 1e-4


@dataclasses.dataclass(frozen=True)
class FpnNodeSpec:
    level: int
    inputs_offsets: tuple[int, ...]


def bifpn_nodes(min_level: int, max_level: int) -> list[FpnNodeSpec]:
    """Top-down path (max-1 .. min), then bottom-up path (min+1 .. max), as AutoML's bifpn_config."""
    num_levels = max_level - min_level + 1
    node_ids = {min_level + i: [i] for i in range(num_levels)}
    next_id = num_levels
    nodes = []
    for level in range(max_level - 1, min_level - 1, -1):
        nodes.append(FpnNodeSpec(level, (node_ids[level][-1], node_ids[level + 1][-1])))
        node_ids[level].append(next_id)
        next_id += 1
    for level in range(min_level + 1, max_level + 1):
        nodes.append(FpnNodeSpec(level, (*node_ids[level], node_ids[level - 1][-1])))
        node_ids[level].append(next_id)
        next_id += 1
    return nodes


class ResampleFeatureMap(nn.Module):
    """Brings a feature map to a target size and width: 1x1 conv (+BN) when widths differ, max-pool
    ('SAME', window stride+1) to shrink, nearest-neighbour (TF1 `resize_nearest_neighbor`) to grow."""

    def __init__(self, in_channels: int, out_channels: int, apply_bn: bool, conv_after_downsample: bool,
                 bn_eps: float) -> None:
        super().__init__()
        self.conv: nn.Module | None = None
        self.bn: nn.Module | None = None
        if in_channels != out_channels:
            self.conv = Conv2dSame(in_channels, out_channels, 1, bias=True)
            if apply_bn:
                self.bn = batch_norm(out_channels, bn_eps)
        self.conv_after_downsample = conv_after_downsample

    def _project(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is not None:
            x = self.conv(x)
            if self.bn is not None:
                x = self.bn(x)
        return x

    def forward(self, x: torch.Tensor, target_hw: tuple[int, int]) -> torch.Tensor:
        height, width = x.shape[-2], x.shape[-1]
        target_h, target_w = target_hw
        if height > target_h and width > target_w:
            stride = ((height - 1) // target_h + 1, (width - 1) // target_w + 1)
            pool = MaxPool2dSame((stride[0] + 1, stride[1] + 1), stride)
            if not self.conv_after_downsample:
                x = self._project(x)
            x = pool(x)
            if self.conv_after_downsample:
                x = self._project(x)
            return x
        if height <= target_h and width <= target_w:
            x = self._project(x)
            if height < target_h or width < target_w:
                # 'nearest' takes source index floor(dst * in / out), as TF's legacy resize does.
                x = F.interpolate(x, size=(target_h, target_w), mode="nearest")
            return x
        raise ValueError(f"cannot resample a {height}x{width} feature map to {target_h}x{target_w}")


@dataclasses.dataclass(frozen=True)
class FpnFlags:
    """The ModelConfig switches that shape every node."""

    apply_bn_for_resampling: bool
    conv_after_downsample: bool
    conv_bn_act_pattern: bool
    separable_conv: bool
    act_type: str
    bn_eps: float


class FpnNode(nn.Module):
    """Fuses its inputs (resampled to its level) by a weighted sum, then act -> 3x3 conv -> BN."""

    def __init__(self, spec: FpnNodeSpec, min_level: int, input_channels: list[int], num_filters: int,
                 weight_method: str, config_flags: FpnFlags) -> None:
        super().__init__()
        if weight_method not in WEIGHT_METHODS:
            raise ValueError(f"unsupported fpn_weight_method {weight_method!r}; supported: {WEIGHT_METHODS}")
        self.target_offset = spec.level - min_level
        self.inputs_offsets = spec.inputs_offsets
        self.weight_method = weight_method
        self.resample = nn.ModuleList(
            ResampleFeatureMap(input_channels[offset], num_filters, config_flags.apply_bn_for_resampling,
                               config_flags.conv_after_downsample, config_flags.bn_eps)
            for offset in spec.inputs_offsets
        )
        self.edge_weights: nn.Parameter | None = None
        if weight_method != "sum":
            self.edge_weights = nn.Parameter(torch.ones(len(spec.inputs_offsets)))
        self.conv_bn_act_pattern = config_flags.conv_bn_act_pattern
        self.conv = conv3x3(config_flags.separable_conv, num_filters, num_filters,
                            bias=not config_flags.conv_bn_act_pattern)
        self.bn = batch_norm(num_filters, config_flags.bn_eps)
        self.act = activation(config_flags.act_type)

    def _fuse(self, nodes: list[torch.Tensor]) -> torch.Tensor:
        if self.edge_weights is None:
            return sum(nodes[1:], nodes[0])
        if self.weight_method == "attn":
            weights = torch.softmax(self.edge_weights.to(nodes[0].dtype), dim=0)
            return sum((node * weights[i] for i, node in enumerate(nodes[1:], 1)), nodes[0] * weights[0])
        weights = torch.relu(self.edge_weights.to(nodes[0].dtype))
        weights = weights / (weights.sum() + _FASTATTN_EPS)
        return sum((node * weights[i] for i, node in enumerate(nodes[1:], 1)), nodes[0] * weights[0])

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        target = feats[self.target_offset]
        target_hw = (target.shape[-2], target.shape[-1])
        nodes = [resample(feats[offset], target_hw) for offset, resample in zip(self.inputs_offsets, self.resample)]
        x = self._fuse(nodes)
        if self.conv_bn_act_pattern:
            return self.act(self.bn(self.conv(x)))
        return self.bn(self.conv(self.act(x)))


class BiFpnCell(nn.Module):
    def __init__(self, nodes: list[FpnNodeSpec], min_level: int, max_level: int, input_channels: list[int],
                 num_filters: int, weight_method: str, flags: FpnFlags) -> None:
        super().__init__()
        channels = list(input_channels)
        fnodes = []
        for spec in nodes:
            fnodes.append(FpnNode(spec, min_level, channels, num_filters, weight_method, flags))
            channels.append(num_filters)
        self.nodes = nn.ModuleList(fnodes)
        # The cell's output at each level is the last node computed at that level.
        num_inputs = len(input_channels)
        self.output_offsets = tuple(
            num_inputs + max(i for i, spec in enumerate(nodes) if spec.level == level)
            for level in range(min_level, max_level + 1)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        feats = list(feats)
        for node in self.nodes:
            feats.append(node(feats))
        return [feats[offset] for offset in self.output_offsets]


class BiFpn(nn.Module):
    """`repeats` BiFPN cells; the first one also adapts the backbone's channel widths."""

    def __init__(self, min_level: int, max_level: int, input_channels: list[int], num_filters: int,
                 repeats: int, weight_method: str, flags: FpnFlags) -> None:
        super().__init__()
        nodes = bifpn_nodes(min_level, max_level)
        self.node_specs = tuple(nodes)
        num_levels = max_level - min_level + 1
        self.cells = nn.ModuleList(
            BiFpnCell(nodes, min_level, max_level, input_channels if i == 0 else [num_filters] * num_levels,
                      num_filters, weight_method, flags)
            for i in range(repeats)
        )

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        for cell in self.cells:
            feats = cell(feats)
        return feats
