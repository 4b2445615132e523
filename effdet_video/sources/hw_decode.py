"""NVDEC decoding through PyAV's own FFmpeg (its `cuda` hwaccel), so that no other package is needed and
a GPU-decoded frame is an ordinary VideoFrame: FFmpeg's decoder still parses the stream, NVDEC does the
picture decoding, and PyAV downloads each frame to system memory (nv12) with its pts, duration and side
data (rotation) intact. The rest of the pipeline does not know which decoder ran.

Where a run needs no full-size frames on the host (detections only), frames can instead stay in GPU
memory (`nvdec_hwaccel(..., frames_on_gpu=True)`): PyAV hands their planes out through DLPack
(`gpu_planes`) and the prepare stage letterboxes them on the GPU (ops/nv12.py), so that neither the
synchronous download of every frame nor its colour conversion costs CPU time.

Whether NVDEC works on a GPU is found out once per process by decoding a one-frame H.264 clip there:
that needs the CUDA driver and its video decoder library (a container started without the driver's
video capability has the first but not the second). The answer is kept, so a batch of a thousand files
on a machine without NVDEC does not try again for each file. What a given stream needs beyond that (a
codec, profile or size NVDEC decodes) shows when its first frame is decoded (`VideoFileSource`).
"""
from __future__ import annotations

import threading
from fractions import Fraction
from typing import TYPE_CHECKING, Sequence

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available

if TYPE_CHECKING:
    import torch

DECODERS = ("auto", "cpu", "nvdec")
PROBE_SIZE = 64  # pixels, square: above NVDEC's smallest coded size

_problems: dict[int, str | None] = {}  # GPU index -> why NVDEC does not work there (None: it does)
_probe_lock = threading.Lock()


def gpu_ids(devices: Sequence[str]) -> list[int]:
    """The GPU indices of engine devices, where NVDEC may decode: 'cuda:1' -> 1 ('cuda' is 0); CPU devices
    have none."""
    return [int(device.partition(":")[2] or 0) for device in devices if device.startswith("cuda")]


def nvdec_hwaccel(gpu_id: int, frames_on_gpu: bool = False) -> HWAccel:
    """Decoding on GPU `gpu_id`'s NVDEC. No software fallback inside FFmpeg: it would decode on the CPU
    single-threaded and unannounced; the caller decides instead.

    Frames downloaded to system memory: each decoder gets a CUDA context of its own, as `ffmpeg -hwaccel
    cuda` does (sharing torch's primary context the way FFmpeg does it, `primary_ctx`, fails once torch
    made that context first: FFmpeg insists on its own context flags). Frames kept on the GPU must live
    in torch's context to be usable by torch: FFmpeg then takes the context current on the calling
    thread (`current_ctx`), which `bind_torch_context` makes torch's."""
    if not frames_on_gpu:
        return HWAccel(device_type="cuda", device=str(gpu_id), allow_software_fallback=False)
    bind_torch_context(gpu_id)
    return HWAccel(device_type="cuda", device=str(gpu_id), allow_software_fallback=False, is_hw_owned=True,
                   options={"primary_ctx": "0", "current_ctx": "1"})


def bind_torch_context(gpu_id: int) -> None:
    """Make torch's CUDA context of GPU `gpu_id` current on this thread (a CUDA runtime call that needs a
    context binds the device's primary context, which is torch's)."""
    import torch  # only where frames stay on the GPU: the CPU decoder never waits for torch

    from effdet_video.engine.blocking_sync import prefer_blocking_sync

    prefer_blocking_sync(gpu_id)
    torch.cuda.set_device(gpu_id)
    torch.cuda.synchronize(gpu_id)


def on_gpu(picture: av.VideoFrame) -> bool:
    """Whether `picture` is a frame in GPU memory (decoded with frames_on_gpu)."""
    return picture.format.name == "cuda"


def gpu_preparable(picture: av.VideoFrame) -> bool:
    """Whether `picture` is a GPU frame the prepare stage takes as it is (nv12, 8-bit 4:2:0)."""
    return on_gpu(picture) and picture.sw_format.name == "nv12"


def gpu_planes(picture: av.VideoFrame) -> tuple[torch.Tensor, torch.Tensor]:
    """The Y [H, W] and interleaved UV [H/2, W/2, 2] planes of an nv12 GPU frame as torch uint8 tensors
    sharing its memory (each keeps the frame alive). FFmpeg wrote them on the legacy default stream of
    torch's context: work queued there after this call sees them complete."""
    import torch

    if not gpu_preparable(picture):
        raise ValueError(f"GPU frames are prepared from nv12, not {picture.sw_format.name}")
    # The capsules, not the planes: torch.from_dlpack(plane) would ask PyAV to synchronise with a
    # stream, which PyAV refuses.
    luma, chroma = (torch.from_dlpack(plane.__dlpack__()) for plane in picture.planes[:2])
    return luma, chroma


def single_threaded(context: av.codec.context.CodecContext) -> None:
    """FFmpeg runs hwaccel decoding one frame at a time even with frame threads, and each frame thread
    costs the decoder one more surface (NVDEC has at most 32): the CPU side is only bitstream parsing."""
    context.thread_type = "NONE"
    context.thread_count = 1


def nvdec_problem(gpu_id: int) -> str | None:
    """Why NVDEC cannot decode on GPU `gpu_id` in this process, or None when it can (probed once)."""
    with _probe_lock:
        if gpu_id not in _problems:
            _problems[gpu_id] = _probe(gpu_id)
        return _problems[gpu_id]


def _probe(gpu_id: int) -> str | None:
    if "cuda" not in hwdevices_available():
        return "this FFmpeg build has no CUDA support"
    packets = _probe_clip()
    try:
        decoder = av.codec.CodecContext.create("h264", "r", hwaccel=nvdec_hwaccel(gpu_id))
        single_threaded(decoder)
        frames = [frame for packet in [*packets, None] for frame in decoder.decode(packet)]
    except av.error.FFmpegError as error:
        return (f"FFmpeg could not decode on CUDA device {gpu_id} ({error.strerror or error}; "
                "needs an NVIDIA GPU and driver with NVDEC)")
    if not decoder.is_hwaccel or not frames:
        return f"NVDEC decoded nothing on CUDA device {gpu_id}"
    return None


def _probe_clip() -> list[av.Packet]:
    """One H.264 frame (Annex B, parameter sets in band) from libx264, the encoder FFmpeg ships with."""
    encoder = av.codec.CodecContext.create("libx264", "w")
    encoder.width = encoder.height = PROBE_SIZE
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 25)
    encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
    frame = av.VideoFrame.from_ndarray(np.zeros((PROBE_SIZE, PROBE_SIZE, 3), np.uint8), format="rgb24")
    frame = frame.reformat(format="yuv420p")
    frame.pts = 0
    return [*encoder.encode(frame), *encoder.encode(None)]
