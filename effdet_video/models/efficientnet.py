"""EfficientNet-B0..B7 backbone, used features-only, as AutoML's `backbone/efficientnet_model.py` builds it.

The network is a table of stages (B0's, below) scaled by a width and a depth coefficient per variant; each
stage expands into MBConv blocks. The backbone returns the "reduction" endpoints AutoML hands to the
feature network: the output of the last block before each stride-2 stage, and of the last block.
"""
from __future__ import annotations

import dataclasses
import math

import torch
from torch import nn

from .layers import Conv2dSame, activation, batch_norm


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """One row of the EfficientNet-B0 table (AutoML's block string 'r1_k3_s11_e1_i32_o16_se0.25')."""

    kernel_size: int
    repeats: int
    stride: int
    expand_ratio: int
    in_channels: int
    out_channels: int
    se_ratio: float = 0.25


B0_STAGES: tuple[StageSpec, ...] = (
    StageSpec(kernel_size=3, repeats=1, stride=1, expand_ratio=1, in_channels=32, out_channels=16),
    StageSpec(kernel_size=3, repeats=2, stride=2, expand_ratio=6, in_channels=16, out_channels=24),
    StageSpec(kernel_size=5, repeats=2, stride=2, expand_ratio=6, in_channels=24, out_channels=40),
    StageSpec(kernel_size=3, repeats=3, stride=2, expand_ratio=6, in_channels=40, out_channels=80),
    StageSpec(kernel_size=5, repeats=3, stride=1, expand_ratio=6, in_channels=80, out_channels=112),
    StageSpec(kernel_size=5, repeats=4, stride=2, expand_ratio=6, in_channels=112, out_channels=192),
    StageSpec(kernel_size=3, repeats=1, stride=1, expand_ratio=6, in_channels=192, out_channels=320),
)

STEM_CHANNELS = 32

# (width_coefficient, depth_coefficient) per variant, from AutoML's `efficientnet_params`.
SCALING: dict[str, tuple[float, float]] = {
    "efficientnet-b0": (1.0, 1.0),
    "efficientnet-b1": (1.0, 1.1),
    "efficientnet-b2": (1.1, 1.2),
    "efficientnet-b3": (1.2, 1.4),
    "efficientnet-b4": (1.4, 1.8),
    "efficientnet-b5": (1.6, 2.2),
    "efficientnet-b6": (1.8, 2.6),
    "efficientnet-b7": (2.0, 3.1),
}

_DEPTH_DIVISOR = 8


def round_filters(filters: int, width_coefficient: float) -> int:
    """Scale a channel count by the width coefficient, rounded to a multiple of 8 (never down >10%)."""
    scaled = filters * width_coefficient
    rounded = max(_DEPTH_DIVISOR, int(scaled + _DEPTH_DIVISOR / 2) // _DEPTH_DIVISOR * _DEPTH_DIVISOR)
    if rounded < 0.9 * scaled:
        rounded += _DEPTH_DIVISOR
    return int(rounded)


def round_repeats(repeats: int, depth_coefficient: float) -> int:
    return int(math.ceil(depth_coefficient * repeats))


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One MBConv block after scaling."""

    in_channels: int
    out_channels: int
    kernel_size: int
    stride: int
    expand_ratio: int
    se_channels: int  # squeeze width: max(1, int(block input channels * se_ratio))

    @property
    def expanded_channels(self) -> int:
        return self.in_channels * self.expand_ratio


def block_specs(backbone_name: str) -> list[BlockSpec]:
    """Every block of `backbone_name`, in order (16 for B0 … 55 for B7)."""
    try:
        width, depth = SCALING[backbone_name]
    except KeyError:
        raise ValueError(f"unknown backbone {backbone_name!r}; known: {', '.join(SCALING)}") from None
    specs = []
    for stage in B0_STAGES:
        in_ch = round_filters(stage.in_channels, width)
        out_ch = round_filters(stage.out_channels, width)
        for i in range(round_repeats(stage.repeats, depth)):
            block_in = in_ch if i == 0 else out_ch
            specs.append(BlockSpec(
                in_channels=block_in,
                out_channels=out_ch,
                kernel_size=stage.kernel_size,
                stride=stage.stride if i == 0 else 1,
                expand_ratio=stage.expand_ratio,
                se_channels=max(1, int(block_in * stage.se_ratio)),
            ))
    return specs


def stem_channels(backbone_name: str) -> int:
    return round_filters(STEM_CHANNELS, SCALING[backbone_name][0])


def reduction_block_indices(specs: list[BlockSpec]) -> list[int]:
    """Index of the block ending each reduction level 1..5: the last block, or one followed by a stride."""
    return [i for i in range(len(specs)) if i == len(specs) - 1 or specs[i + 1].stride > 1]


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, squeeze_channels: int, act_type: str) -> None:
        super().__init__()
        self.reduce = Conv2dSame(channels, squeeze_channels, 1, bias=True)
        self.expand = Conv2dSame(squeeze_channels, channels, 1, bias=True)
        self.act = activation(act_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean(dim=(2, 3), keepdim=True)
        scale = self.expand(self.act(self.reduce(scale)))
        return x * torch.sigmoid(scale)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand + BN + act] -> depthwise + BN + act -> SE -> 1x1 project + BN (+ skip).
    Drop-connect is a training-only op, so inference has none."""

    def __init__(self, spec: BlockSpec, act_type: str, bn_eps: float) -> None:
        super().__init__()
        self.spec = spec
        mid = spec.expanded_channels
        self.expand_conv: nn.Module | None = None
        self.bn0: nn.Module | None = None
        if spec.expand_ratio != 1:
            self.expand_conv = Conv2dSame(spec.in_channels, mid, 1, bias=False)
            self.bn0 = batch_norm(mid, bn_eps)
        self.depthwise_conv = Conv2dSame(mid, mid, spec.kernel_size, stride=spec.stride, groups=mid, bias=False)
        self.bn1 = batch_norm(mid, bn_eps)
        self.se = SqueezeExcite(mid, spec.se_channels, act_type)
        self.project_conv = Conv2dSame(mid, spec.out_channels, 1, bias=False)
        self.bn2 = batch_norm(spec.out_channels, bn_eps)
        self.act = activation(act_type)
        self.has_skip = spec.stride == 1 and spec.in_channels == spec.out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self.expand_conv is not None:
            out = self.act(self.bn0(self.expand_conv(out)))
        out = self.act(self.bn1(self.depthwise_conv(out)))
        out = self.se(out)
        out = self.bn2(self.project_conv(out))
        if self.has_skip:
            out = out + x
        return out


class Stem(nn.Module):
    def __init__(self, out_channels: int, act_type: str, bn_eps: float) -> None:
        super().__init__()
        self.conv = Conv2dSame(3, out_channels, 3, stride=2, bias=False)
        self.bn = batch_norm(out_channels, bn_eps)
        self.act = activation(act_type)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class EfficientNetFeatures(nn.Module):
    """EfficientNet without its classification head; returns the endpoints of `levels` (1..5, stride 2**level)."""

    def __init__(self, backbone_name: str, levels: range, act_type: str, bn_eps: float) -> None:
        super().__init__()
        if levels.start < 1 or levels.stop > 6:
            raise ValueError(f"EfficientNet has feature levels 1..5, not {list(levels)}")
        self.name = backbone_name
        specs = block_specs(backbone_name)
        self.stem = Stem(stem_channels(backbone_name), act_type, bn_eps)
        self.blocks = nn.ModuleList(MBConvBlock(spec, act_type, bn_eps) for spec in specs)
        reductions = reduction_block_indices(specs)
        self.feature_blocks = tuple(reductions[level - 1] for level in levels)
        self.feature_channels = tuple(specs[i].out_channels for i in self.feature_blocks)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        features = []
        for index, block in enumerate(self.blocks):
            x = block(x)
            if index in self.feature_blocks:
                features.append(x)
            if index == self.feature_blocks[-1]:
                break
        return features
