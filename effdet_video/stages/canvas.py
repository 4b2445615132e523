"""The decoded frame that boxes are drawn on, kept in the decoder's YUV layout from decode to the encoder:
a PyAV frame on the host, or NVDEC's nv12 in GPU memory (`GpuFrame`, a prepare group's frames packed
together so that each frame is one contiguous run of bytes: one copy to the host per frame).

Frames travel to the encoder packed: luma rows, then chroma (interleaved for nv12, Cb then Cr for the
planar layouts), in one of the transfer layouts below (`SUBSAMPLING`).
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

import av
import numpy as np

from effdet_video.ops.paint import chroma_view

if TYPE_CHECKING:
    import torch

# The layouts frames travel in to the encoder (each frame luma then chroma, rows packed) and their
# chroma subsampling (rows, columns).
SUBSAMPLING = {"yuv420p": (2, 2), "nv12": (2, 2), "yuv444p": (1, 1)}


def chroma_size(pix_fmt: str, width: int, height: int) -> tuple[int, int]:
    """(rows, columns) of one chroma plane."""
    sy, sx = SUBSAMPLING[pix_fmt]
    return -(-height // sy), -(-width // sx)


# Layouts that are another one's bytes with other colour tags.
_SAME_BYTES = {"yuvj420p": "yuv420p", "yuvj444p": "yuv444p"}


def byte_layout(pix_fmt: str) -> str:
    """The transfer layout whose bytes a frame of `pix_fmt` has (full-range yuvj420p is yuv420p's)."""
    return _SAME_BYTES.get(pix_fmt, pix_fmt)


@dataclasses.dataclass(frozen=True)
class GpuFrames:
    """A group of frames of one size in GPU memory as packed nv12: uint8 [G, H*W + 2*Hc*Wc]."""

    data: torch.Tensor
    height: int
    width: int

    @classmethod
    def empty(cls, count: int, height: int, width: int, device: torch.device) -> GpuFrames:
        import torch

        rows, cols = chroma_size("nv12", width, height)
        data = torch.empty((count, height * width + 2 * rows * cols), dtype=torch.uint8, device=device)
        return cls(data, height, width)

    @property
    def luma(self) -> torch.Tensor:
        """[G, H, W] views."""
        return self.data[:, : self.height * self.width].view(-1, self.height, self.width)

    @property
    def chroma(self) -> torch.Tensor:
        """[G, Hc, Wc, 2] views."""
        rows, cols = chroma_size("nv12", self.width, self.height)
        return self.data[:, self.height * self.width:].view(-1, rows, cols, 2)


@dataclasses.dataclass(frozen=True)
class GpuFrame:
    """Frame `index` of a GpuFrames group."""

    frames: GpuFrames
    index: int

    def download(self) -> av.VideoFrame:
        """The frame as a host nv12 PyAV frame (for an encoder that does not take nv12, or an odd size)."""
        rows, cols = chroma_size("nv12", self.frames.width, self.frames.height)
        packed = self.frames.data[self.index].cpu().numpy()
        height, width = self.frames.height, self.frames.width
        picture = av.VideoFrame(width, height, "nv12")
        plane_rows(picture.planes[0], height, width)[:] = packed[: height * width].reshape(height, width)
        plane_rows(picture.planes[1], rows, 2 * cols)[:] = packed[height * width:].reshape(rows, 2 * cols)
        return picture


def plane_rows(plane: av.video.plane.VideoPlane, rows: int, row_bytes: int) -> np.ndarray:
    """A picture plane's pixels as a [rows, row_bytes] view (without the padding at each row's end)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:rows, :row_bytes]


def packed_planes(packed: np.ndarray, pix_fmt: str, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Luma [H, W] and chroma [Hc, Wc, 2] views of a packed frame (1-D uint8)."""
    layout = byte_layout(pix_fmt)
    luma = packed[: height * width].reshape(height, width)
    return luma, chroma_view(packed, height, width, chroma_size(layout, width, height), layout == "nv12")


def pack_picture(picture: av.VideoFrame, packed: np.ndarray) -> None:
    """Copy a host picture in one of the transfer layouts into `packed` (1-D uint8, frame_bytes long)."""
    width, height = picture.width, picture.height
    layout = byte_layout(picture.format.name)
    rows, cols = chroma_size(layout, width, height)
    np.copyto(packed[: height * width].reshape(height, width), plane_rows(picture.planes[0], height, width))
    chroma = packed[height * width:]
    if layout == "nv12":
        np.copyto(chroma.reshape(rows, 2 * cols), plane_rows(picture.planes[1], rows, 2 * cols))
        return
    for plane, start in ((picture.planes[1], 0), (picture.planes[2], rows * cols)):
        np.copyto(chroma[start: start + rows * cols].reshape(rows, cols), plane_rows(plane, rows, cols))
