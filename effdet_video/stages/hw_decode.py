"""NVDEC decoding through PyAV's own FFmpeg (its `cuda` hwaccel), so that no other package is needed and
a GPU-decoded frame is an ordinary VideoFrame: FFmpeg's decoder still parses the stream, NVDEC does the
picture decoding, and PyAV downloads each frame to system memory (nv12) with its pts, duration and side
data (rotation) intact. The rest of the pipeline does not know which decoder ran.

Whether NVDEC works on a GPU is found out once per process by decoding a one-frame H.264 clip there:
that needs the CUDA driver and its video decoder library (a container started without the driver's
video capability has the first but not the second). The answer is kept, so a batch of a thousand files
on a machine without NVDEC does not try again for each file. What a given stream needs beyond that (a
codec, profile or size NVDEC decodes) shows when its first frame is decoded (`VideoFileSource`).
"""
from __future__ import annotations

import threading
from fractions import Fraction

import av
import numpy as np
from av.codec.hwaccel import HWAccel, hwdevices_available

DECODERS = ("auto", "cpu", "nvdec")
PROBE_SIZE = 64  # pixels, square: above NVDEC's smallest coded size

_problems: dict[int, str | None] = {}  # GPU index -> why NVDEC does not work there (None: it does)
_probe_lock = threading.Lock()


def nvdec_hwaccel(gpu_id: int) -> HWAccel:
    """Decoding on GPU `gpu_id`'s NVDEC, frames downloaded to system memory. No software fallback inside
    FFmpeg: it would decode on the CPU single-threaded and unannounced; the caller decides instead.

    Each decoder gets a CUDA context of its own, as `ffmpeg -hwaccel cuda` does: sharing torch's primary
    context can fail when torch made it first (FFmpeg insists on its own context flags)."""
    return HWAccel(device_type="cuda", device=str(gpu_id), allow_software_fallback=False)


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
