"""TF-'same' depthwise convolution as one torch op, `effdet_video::depthwise_conv2d`.

On CUDA, for channels-last inputs, it runs the Triton kernel of depthwise_triton.py (it starts at once,
where cuDNN's first calls cost seconds); elsewhere it is F.conv2d. Being a registered op
(with a fake implementation for shapes), it is traced as one node by make_fx, compiled by Inductor as a
call to it, and captured in CUDA graphs like any kernel.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def tf_same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """(before, after) padding of one spatial dim so that out = ceil(size / stride), as TF 'SAME' (the
    odd pixel goes after, which PyTorch's symmetric `padding=` cannot express)."""
    total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int], stride: tuple[int, int], value: float) -> torch.Tensor:
    """`x` padded TF-'same' for a `kernel`/`stride` window (unchanged where no padding is needed)."""
    top, bottom = tf_same_padding(x.shape[-2], kernel[0], stride[0])
    left, right = tf_same_padding(x.shape[-1], kernel[1], stride[1])
    if top == bottom == left == right == 0:
        return x
    return F.pad(x, (left, right, top, bottom), value=value)


def _output_hw(x: torch.Tensor, stride: int) -> tuple[int, int]:
    return math.ceil(x.shape[2] / stride), math.ceil(x.shape[3] / stride)


def _depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    kernel = tuple(weight.shape[2:])
    if uses_kernel(x):
        from effdet_video.ops.depthwise_triton import depthwise_conv2d_nhwc

        top = tf_same_padding(x.shape[2], kernel[0], stride)[0]
        left = tf_same_padding(x.shape[3], kernel[1], stride)[0]
        return depthwise_conv2d_nhwc(x, weight, stride, top, left, *_output_hw(x, stride))
    return F.conv2d(pad_same(x, kernel, (stride, stride), 0.0), weight, stride=stride, groups=x.shape[1])


def _depthwise_conv2d_shape(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """The output's shape, dtype and layout only (meta and fake tensors: tracing, compiling)."""
    channels_last = x.is_contiguous(memory_format=torch.channels_last)  # as the kernel and F.conv2d give
    return torch.empty((x.shape[0], x.shape[1], *_output_hw(x, stride)), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last if channels_last else torch.contiguous_format)


# Registered through torch.library.Library, not the @custom_op decorator: calling a @custom_op op imports
# torch._dynamo and hundreds of modules with it, seconds of an eager engine's start (docs/performance.md).
_LIBRARY = torch.library.Library("effdet_video", "DEF")
_LIBRARY.define("depthwise_conv2d(Tensor x, Tensor weight, int stride) -> Tensor")
_LIBRARY.impl("depthwise_conv2d", _depthwise_conv2d, "CompositeExplicitAutograd")
_LIBRARY.impl("depthwise_conv2d", _depthwise_conv2d_shape, "Meta")
depthwise_conv2d = torch.ops.effdet_video.depthwise_conv2d.default
depthwise_conv2d.__doc__ = """x [N, C, H, W], weight [C, 1, KH, KW] (no bias) -> [N, C, ceil(H/s), ceil(W/s)],
TF-'same' padded."""


def uses_kernel(x: torch.Tensor) -> bool:
    """Whether `depthwise_conv2d` takes the Triton kernel for `x` (CUDA, channels-last)."""
    return x.is_cuda and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
