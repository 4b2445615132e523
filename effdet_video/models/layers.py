"""Building blocks that behave like TensorFlow's: 'same' padding, separable convs, BN + activation.

TF's 'same' padding is asymmetric for strided ops (the extra pixel goes bottom/right), which PyTorch's
symmetric `padding=` cannot express, so strided convs and pools pad explicitly from the input shape.
Shapes are static per compiled graph, so this Python arithmetic is traced away by torch.compile.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.depthwise import depthwise_conv2d, pad_same, uses_kernel


class Conv2dSame(nn.Conv2d):
    """nn.Conv2d with TF 'same' padding. Stride-1 odd kernels pad symmetrically, so they use
    PyTorch's built-in padding (faster, no extra copy); strided convs pad explicitly.

    With `quick_start` on (`set_quick_start`: the engine's choice, engine/policy.py) two kinds avoid cuDNN
    on CUDA channels-last inputs, as cuDNN's first call of each shape costs every start seconds in all
    (ops/depthwise_triton.py has the figures): depthwise convs run `effdet_video::depthwise_conv2d`, and
    1x1 convs are matrix products over the channel dim (cuBLAS; a channels-last tensor already is
    [N*H*W, C] in memory). Inference only (grad mode off): the op has no backward, and training keeps
    cuDNN."""

    quick_start = False

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 groups: int = 1, bias: bool = True) -> None:
        symmetric = stride == 1 and kernel_size % 2 == 1
        super().__init__(in_channels, out_channels, kernel_size, stride=stride,
                         padding=kernel_size // 2 if symmetric else 0, groups=groups, bias=bias)
        self._explicit_padding = not symmetric
        self._pointwise = kernel_size == 1 and stride == 1 and groups == 1
        self._depthwise = groups == in_channels == out_channels > 1 and not bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        quick = self.quick_start and uses_kernel(x) and not torch.is_grad_enabled()
        if self._pointwise and quick:
            return F.linear(x.permute(0, 2, 3, 1), self.weight[:, :, 0, 0], self.bias).permute(0, 3, 1, 2)
        if self._depthwise and quick:
            return depthwise_conv2d(x, self.weight, self.stride[0])
        if self._explicit_padding:
            x = pad_same(x, self.kernel_size, self.stride, 0.0)
        return super().forward(x)


def set_quick_start(module: nn.Module, enabled: bool) -> None:
    """Turn the quick-start paths of every Conv2dSame in `module` on or off. The model leaves the choice
    to whoever runs it: it is engine policy, made once per engine from the batch size it is built for."""
    for layer in module.modules():
        if isinstance(layer, Conv2dSame):
            layer.quick_start = enabled


class MaxPool2dSame(nn.Module):
    """Max pooling with TF 'SAME' padding: padded cells never win (padded with -inf)."""

    def __init__(self, kernel_size: tuple[int, int], stride: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = pad_same(x, self.kernel_size, self.stride, float("-inf"))
        return F.max_pool2d(x, self.kernel_size, self.stride)


class SeparableConv2d(nn.Module):
    """Keras SeparableConv2D (depth_multiplier 1, stride 1): depthwise kxk, then pointwise 1x1 (+ bias)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, bias: bool = True) -> None:
        super().__init__()
        self.depthwise = Conv2dSame(in_channels, in_channels, kernel_size, groups=in_channels, bias=False)
        self.pointwise = Conv2dSame(in_channels, out_channels, 1, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.depthwise(x))


def conv3x3(separable: bool, in_channels: int, out_channels: int, bias: bool = True) -> nn.Module:
    """The 3x3 'same' conv of BiFPN nodes and heads: separable (all D0–D7x) or a plain Conv2D."""
    if separable:
        return SeparableConv2d(in_channels, out_channels, 3, bias=bias)
    return Conv2dSame(in_channels, out_channels, 3, bias=bias)


def batch_norm(channels: int, eps: float) -> nn.BatchNorm2d:
    """Keras BatchNormalization as AutoML builds it: epsilon 1e-3, Keras momentum 0.99 (= torch's 0.01)."""
    return nn.BatchNorm2d(channels, eps=eps, momentum=0.01)


def _hard_swish(x: torch.Tensor) -> torch.Tensor:
    return x * F.relu6(x + 3.0) / 6.0


_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "swish": F.silu,
    "silu": F.silu,
    "swish_native": F.silu,
    "relu": F.relu,
    "relu6": F.relu6,
    "hswish": _hard_swish,
    "mish": F.mish,
}


def activation(act_type: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """AutoML's `utils.activation_fn` as a function of a tensor."""
    try:
        return _ACTIVATIONS[act_type]
    except KeyError:
        raise ValueError(f"unsupported act_type {act_type!r}; known: {', '.join(_ACTIVATIONS)}") from None
