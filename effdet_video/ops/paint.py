"""Painting into YUV planes: rectangles of one value and small pixel patches, the two things that box
outlines and labels are made of. A plane is luma [H, W] or chroma [Hc, Wc, 2] (Cb, Cr pairs: a view of
either an interleaved nv12 plane or two planar ones), each as it lies in memory, so a frame is drawn
where it is, without a conversion to RGB and back.

On the host each patch is one NumPy slice assignment. On the GPU, every patch of a group of frames is
painted by a handful of torch calls whatever their number (one index computation, one sort so that the
last patch wins where they overlap, one scatter per plane), which no library offers for lists of
rectangles, hence written here.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Sequence

import numpy as np
from numpy.lib.stride_tricks import as_strided

if TYPE_CHECKING:
    import torch


@dataclasses.dataclass(frozen=True)
class Patch:
    """`pixels` ([h, w] for luma, [h, w, 2] for chroma) put at (row, col) of a plane; a rectangle of
    one value is a broadcast view (no memory)."""

    row: int
    col: int
    pixels: np.ndarray

    @classmethod
    def fill(cls, row: int, col: int, height: int, width: int, value: int | tuple[int, int]) -> Patch:
        """A rectangle of one value: a read-only view with zero row and column strides, made by the array
        constructor (np.broadcast_to's checks cost several times more, and a box's outline takes eight)."""
        value = np.asarray(value, dtype=np.uint8)
        pixels = np.ndarray((height, width, *value.shape), np.uint8, value, 0, (0, 0, *value.strides))
        pixels.flags.writeable = False
        return cls(row, col, pixels)

    @property
    def constant(self) -> bool:
        return self.pixels.size > 0 and self.pixels.strides[0] == 0 and self.pixels.strides[1] == 0

    def clipped(self, height: int, width: int) -> Patch | None:
        """The part inside a plane of `height` x `width`, or None when nothing is."""
        top, left = max(self.row, 0), max(self.col, 0)
        bottom = min(self.row + self.pixels.shape[0], height)
        right = min(self.col + self.pixels.shape[1], width)
        if bottom <= top or right <= left:
            return None
        return Patch(top, left, self.pixels[top - self.row: bottom - self.row, left - self.col: right - self.col])


@dataclasses.dataclass(frozen=True)
class PaintList:
    """What to paint into one frame: patches for its luma plane and for its chroma plane."""

    luma: tuple[Patch, ...] = ()
    chroma: tuple[Patch, ...] = ()


def chroma_view(buffer: np.ndarray, height: int, width: int, chroma_hw: tuple[int, int], interleaved: bool
                ) -> np.ndarray:
    """The chroma [Hc, Wc, 2] of a frame laid out as luma then chroma in `buffer` (1-D uint8): nv12
    (`interleaved`) or planar Cb then Cr (yuv420p, yuv444p)."""
    rows, cols = chroma_hw
    start = buffer[height * width:]
    if interleaved:
        return start[: rows * cols * 2].reshape(rows, cols, 2)
    return as_strided(start, shape=(rows, cols, 2), strides=(cols, 1, rows * cols), writeable=True)


def paint(plane: np.ndarray, patches: Sequence[Patch]) -> None:
    """Paint `patches` into a host plane (luma [H, W] or chroma [Hc, Wc, 2]) in place, later ones on top."""
    height, width = plane.shape[:2]
    for patch in patches:
        if (clipped := patch.clipped(height, width)) is not None:
            rows, cols = clipped.pixels.shape[:2]
            plane[clipped.row: clipped.row + rows, clipped.col: clipped.col + cols] = clipped.pixels


def paint_group(frames: torch.Tensor, plane_offset: int, plane_hw: tuple[int, int], channels: int,
                patches: Sequence[tuple[int, Sequence[Patch]]]) -> None:
    """Paint (g, patches) pairs into the plane of frame g of a GPU group, all at once. `frames` is uint8 [G, N]
    (each frame's bytes contiguous); the plane starts `plane_offset` bytes into a frame, is `plane_hw`
    samples of `channels` bytes each (1 luma, 2 chroma pairs), rows packed."""
    import torch

    height, width = plane_hw
    dtype = torch.uint8 if channels == 1 else torch.int16  # a Cb, Cr pair moves as one 16-bit sample
    np_dtype = np.uint8 if channels == 1 else np.int16
    rows, pixels, constants = [], [], []
    offset = 0  # where the next patch's pixels start in the concatenated `pixels`
    for g, frame_patches in patches:
        for patch in frame_patches:
            clipped = patch.clipped(height, width)
            if clipped is None:
                continue
            h, w = clipped.pixels.shape[:2]
            if clipped.constant:
                value = np.ascontiguousarray(clipped.pixels[0, 0]).view(np_dtype).reshape(-1)[0]
                rows.append((g, clipped.row, clipped.col, h, w, -1))
                constants.append(int(value))
            else:
                pixels.append(np.ascontiguousarray(clipped.pixels).view(np_dtype).reshape(-1))
                rows.append((g, clipped.row, clipped.col, h, w, offset))
                constants.append(0)
                offset += pixels[-1].size
    if not rows:
        return
    device = frames.device
    table = torch.from_numpy(np.array(rows, dtype=np.int64)).to(device)
    values = torch.from_numpy(np.array(constants, dtype=np_dtype)).to(device)
    source = torch.from_numpy(np.concatenate(pixels) if pixels else np.zeros(1, np_dtype)).to(device)
    frame, top, left, h, w, offset = table.unbind(1)
    sizes = h * w
    total = int(sum(r[3] * r[4] for r in rows))
    which = torch.repeat_interleave(torch.arange(len(rows), device=device), sizes, output_size=total)
    local = torch.arange(total, device=device) - (torch.cumsum(sizes, 0) - sizes)[which]
    row = local // w[which]
    col = local - row * w[which]
    base = frames.view(dtype)  # [G, N / channels]
    stride = base.shape[1]
    target = frame[which] * stride + plane_offset // channels + (top[which] + row) * width + left[which] + col
    # Where patches overlap the later one wins, as on the host: of each target's writes only the last
    # is kept (a scatter with repeated indices has no defined order on the GPU).
    order = torch.argsort(target * len(rows) + which)
    ordered = target[order]
    last = torch.ones_like(ordered, dtype=torch.bool)
    last[:-1] = ordered[1:] != ordered[:-1]
    keep = order[last]
    which, local = which[keep], local[keep]
    from_source = source[(offset[which] + local).clamp_(0, source.numel() - 1)]
    base.view(-1)[target[keep]] = torch.where(offset[which] >= 0, from_source, values[which])


def warm_up_painting(device: torch.device | str) -> None:
    """Paint a group the size of a few frames' box outlines once, in both sample widths: a process's
    first `paint_group` loads the sort, scan and scatter kernels for that work, which would otherwise
    delay the first annotated frames of a stream (docs/performance.md has the figure)."""
    import torch

    frames = torch.zeros((1, 2 * 512 * 512), dtype=torch.uint8, device=device)
    label = np.ones((16, 64), np.uint8)
    for channels, value in ((1, 200), (2, (90, 160))):
        patch = Patch(0, 0, label if channels == 1 else np.stack([label, label], axis=-1))
        paint_group(frames, 0, (512, 512), channels, [(0, (Patch.fill(8, 8, 400, 500, value), patch))])
    torch.cuda.synchronize(device)
