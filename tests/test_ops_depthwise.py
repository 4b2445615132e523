"""The depthwise op (ops/depthwise.py) and its Triton kernel against F.conv2d on TF-'same' padded inputs, at
the kernel sizes, strides and odd sizes EfficientDet has; and Conv2dSame's channels-last paths (1x1 as
a matrix product, depthwise through the op) against its plain NCHW convolution."""
from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from effdet_video.models.layers import Conv2dSame, set_quick_start
from effdet_video.ops.depthwise import depthwise_conv2d, tf_same_padding
from tests.conftest import REPO

# (batch, channels, height, width, kernel, stride): D0's 3x3/5x5, strides 1 and 2, odd sizes, channel
# counts below, at and above the kernel's 32-channel block
CASES = [(2, 16, 9, 7, 3, 1), (1, 24, 10, 11, 5, 2), (2, 96, 8, 8, 3, 2), (1, 72, 5, 6, 5, 1),
         (1, 40, 13, 9, 3, 2), (3, 144, 16, 16, 3, 1), (1, 1152, 4, 4, 5, 1)]


def _reference(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """Written out here (not ops.depthwise.pad_same), so the op's own fallback is checked against it."""
    kernel = weight.shape[2]
    top, bottom = tf_same_padding(x.shape[2], kernel, stride)
    left, right = tf_same_padding(x.shape[3], kernel, stride)
    return F.conv2d(F.pad(x, (left, right, top, bottom)), weight, stride=stride, groups=x.shape[1])


def _case(case: tuple[int, ...], device: str = "cpu", dtype: torch.dtype = torch.float32):
    batch, channels, height, width, kernel, stride = case
    generator = torch.Generator().manual_seed(sum(case))
    x = torch.randn(batch, channels, height, width, generator=generator)
    weight = torch.randn(channels, 1, kernel, kernel, generator=generator)
    return (x.to(device, dtype).contiguous(memory_format=torch.channels_last),
            weight.to(device, dtype).contiguous(memory_format=torch.channels_last), stride)


@pytest.mark.parametrize("size,kernel,stride,expected", [(10, 3, 2, (0, 1)), (10, 5, 2, (1, 2)), (9, 3, 2, (1, 1)), (7, 3, 1, (1, 1))])
def test_tf_same_padding_puts_the_odd_pixel_after(size: int, kernel: int, stride: int, expected) -> None:
    assert tf_same_padding(size, kernel, stride) == expected
    assert (size + sum(expected) - kernel) // stride + 1 == math.ceil(size / stride)


@pytest.mark.parametrize("case", CASES[:3])
def test_the_op_is_registered_with_consistent_fake_shapes(case) -> None:
    x, weight, stride = _case(case)
    for layout in (x.contiguous(), x):
        torch.library.opcheck(depthwise_conv2d, (layout, weight, stride))
        torch.testing.assert_close(depthwise_conv2d(layout, weight, stride), _reference(x, weight, stride))


@pytest.mark.gpu
@pytest.mark.parametrize("quick_start", [True, False])
@pytest.mark.parametrize("stride,kernel", [(1, 1), (1, 3), (2, 3), (2, 5)])
def test_conv2d_same_on_cuda_equals_its_cpu_convolution(stride: int, kernel: int, quick_start: bool) -> None:
    """With quick start on, channels-last inputs take the quick-start paths (1x1 as matmul, depthwise op),
    without it cuDNN: both equal the CPU's NCHW convolution in float32."""
    torch.manual_seed(stride * 10 + kernel)
    depthwise = kernel > 1
    conv = Conv2dSame(32, 32 if depthwise else 48, kernel, stride=stride, groups=32 if depthwise else 1,
                      bias=not depthwise).eval()
    set_quick_start(conv, quick_start)
    batch = 2
    x = torch.randn(batch, 32, 11, 10)
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want = conv(x)
        got = conv.cuda()(x.cuda().contiguous(memory_format=torch.channels_last)).cpu()
    assert want.shape == (batch, conv.out_channels, math.ceil(11 / stride), math.ceil(10 / stride))
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="Triton is not installed (its interpreter runs the kernel on the CPU)")
def test_triton_kernel_on_the_cpu_interpreter_equals_conv2d() -> None:
    """The kernel's indexing (padding masks, strides, channel blocks) checked without a GPU."""
    script = """
from tests.test_ops_depthwise import CASES, _case, _reference
from effdet_video.ops.depthwise_triton import depthwise_conv2d_nhwc
from effdet_video.ops.depthwise import tf_same_padding
import math, torch
for case in CASES[:5]:
    x, w, s = _case(case)
    top, left = tf_same_padding(x.shape[2], w.shape[2], s)[0], tf_same_padding(x.shape[3], w.shape[3], s)[0]
    got = depthwise_conv2d_nhwc(x, w, s, top, left, math.ceil(x.shape[2] / s), math.ceil(x.shape[3] / s))
    assert got.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(got, _reference(x, w, s), rtol=1e-5, atol=1e-5)
print("ok")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600, cwd=REPO,
                          env={**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(REPO)})
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES)
def test_triton_kernel_on_cuda_equals_conv2d(case, dtype: torch.dtype) -> None:
    x, weight, stride = _case(case, "cuda", dtype)
    got = depthwise_conv2d(x, weight, stride)
    assert got.dtype == dtype and got.is_contiguous(memory_format=torch.channels_last)
    want = _reference(x.double(), weight.double(), stride)
    # float32 accumulation: only the output's rounding differs (one ulp of fp16/bf16; fp32 sums of 25)
    tolerance = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}[dtype]
    torch.testing.assert_close(got.double(), want, rtol=tolerance, atol=tolerance * 4)
