"""Depthwise convolution of channels-last tensors as one Triton kernel (the CUDA path of ops/depthwise.py).

Why hand-written: cuDNN computes these well, but the first call of each depthwise shape in a process
costs it a large part of a second, and D0 has 17 such shapes: seconds of every start, far more than its
pointwise shapes cost together (docs/performance.md has the figures). ATen's own depthwise kernel starts
at once but only takes NCHW, so each call would copy its input and output between layouts. This kernel
reads channels-last directly, pads TF-'same' by masking (no padded copy), accumulates in float32, and,
once Triton has cached its few compiled variants (kernel size, stride), starts in milliseconds. It is
slower than cuDNN in steady state (ops/depthwise.py says where each is used).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

# One config for all of D0's shapes: the fastest overall of those benchmarks/probe_dw.py tries (blocks of
# 32-128 channels x 16-64 pixels, 4 or 8 warps).
BLOCK_CHANNELS, BLOCK_PIXELS, WARPS = 32, 64, 4


@triton.jit(do_not_specialize=["height", "width", "out_height", "out_width", "pad_top", "pad_left", "pixels"])
def _depthwise_kernel(x_ptr, w_ptr, y_ptr, channels, height, width, out_height, out_width, pad_top, pad_left,
                      pixels, stride_n, stride_h, stride_w, w_stride_c, w_stride_h, w_stride_w,
                      KERNEL_H: tl.constexpr, KERNEL_W: tl.constexpr, STRIDE: tl.constexpr,
                      BLOCK_P: tl.constexpr, BLOCK_C: tl.constexpr):
    pixel = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    channel = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    pixel_ok = pixel < pixels
    channel_ok = channel < channels
    image = pixel // (out_height * out_width)
    row = (pixel // out_width) % out_height
    col = pixel % out_width
    base = x_ptr + image.to(tl.int64) * stride_n
    acc = tl.zeros((BLOCK_P, BLOCK_C), dtype=tl.float32)
    for kh in tl.static_range(KERNEL_H):
        in_row = row * STRIDE - pad_top + kh
        row_ok = pixel_ok & (in_row >= 0) & (in_row < height)
        for kw in tl.static_range(KERNEL_W):
            in_col = col * STRIDE - pad_left + kw
            ok = row_ok & (in_col >= 0) & (in_col < width)
            offsets = (in_row * stride_h + in_col * stride_w)[:, None] + channel[None, :]
            x = tl.load(base[:, None] + offsets, mask=ok[:, None] & channel_ok[None, :], other=0.0)
            w = tl.load(w_ptr + channel * w_stride_c + kh * w_stride_h + kw * w_stride_w, mask=channel_ok, other=0.0)
            acc += x.to(tl.float32) * w.to(tl.float32)[None, :]
    out = y_ptr + pixel.to(tl.int64)[:, None] * channels + channel[None, :]
    tl.store(out, acc.to(y_ptr.dtype.element_ty), mask=pixel_ok[:, None] & channel_ok[None, :])


def depthwise_conv2d_nhwc(x: torch.Tensor, weight: torch.Tensor, stride: int, pad_top: int, pad_left: int,
                          out_height: int, out_width: int, block_c: int = BLOCK_CHANNELS,
                          block_p: int = BLOCK_PIXELS, num_warps: int = WARPS) -> torch.Tensor:
    """x [N, C, H, W] channels-last (stride 1 along C), weight [C, 1, KH, KW] -> [N, C, OH, OW] channels-last.
    The block sizes are arguments for benchmarks/probe_dw.py, which chose the defaults."""
    batch, channels, height, width = x.shape
    out = torch.empty((batch, channels, out_height, out_width), dtype=x.dtype, device=x.device,
                      memory_format=torch.channels_last)
    pixels = batch * out_height * out_width
    grid = (triton.cdiv(pixels, block_p), triton.cdiv(channels, block_c))
    _depthwise_kernel[grid](x, weight, out, channels, height, width, out_height, out_width, pad_top, pad_left,
                            pixels, x.stride(0), x.stride(2), x.stride(3),
                            weight.stride(0), weight.stride(2), weight.stride(3),
                            KERNEL_H=weight.shape[2], KERNEL_W=weight.shape[3], STRIDE=stride,
                            BLOCK_P=block_p, BLOCK_C=block_c, num_warps=num_warps)
    return out
