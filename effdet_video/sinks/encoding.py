"""Choices about the encoded video shared by every writer of it (the file writer's encoder process, the
live stream output, the benchmark's peers): codec per extension, pixel format, options, threads, a
frame's size in its transfer layout (stages/canvas.py names the layouts), and the conversion of
annotated RGB frames (live streams)."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from effdet_video.errors import UserError
from effdet_video.stages.canvas import chroma_size

DEFAULT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9"}
QUALITY_CODECS = ("libx264", "libx265")  # codecs that take --crf and --preset


def default_codec(output: Path) -> str:
    codec = DEFAULT_CODECS.get(output.suffix.lower())
    if codec is None:
        raise UserError(f"{output}: unsupported output extension {output.suffix!r} "
                        f"(use one of {', '.join(DEFAULT_CODECS)})")
    return codec


def encoder_pixel_format(codec: str, width: int, height: int, source_format: str = "yuv420p") -> str:
    """The layout frames are encoded in: the decoder's own nv12 where the codec takes it (NVDEC's
    frames then reach the encoder as they are), else yuv420p (plays everywhere), and yuv444p for odd
    sizes, which 4:2:0 cannot store. The first look at `codec`: one that FFmpeg cannot encode with is
    the user's error here."""
    try:
        encoder = av.Codec(codec, "w")
    except ValueError as error:  # PyAV's UnknownCodecError
        raise UserError(f"video codec {codec!r} is not available ({error})") from None
    formats = {f.name for f in (encoder.video_formats or ())}
    even = width % 2 == 0 and height % 2 == 0
    candidates = ("nv12",) if even and source_format == "nv12" else ()
    for candidate in (*candidates, "yuv420p", "yuv444p") if even else ("yuv444p",):
        if candidate in formats:
            return candidate
    raise UserError(f"codec {codec} cannot store a {width}x{height} video without resizing; "
                    "use libx264 (the default for .mp4/.mkv/.mov)")


def encoder_options(codec: str, crf: int, preset: str) -> dict[str, str]:
    if codec in QUALITY_CODECS:
        return {"crf": str(crf), "preset": preset}
    if codec == "libvpx-vp9":
        return {"crf": str(crf), "b": "0", "row-mt": "1"}
    return {}


def use_all_cores(stream: av.video.stream.VideoStream) -> None:
    """Let the encoder use every core, as the ffmpeg command does ("threads auto"): FFmpeg's own default
    for a codec context, which PyAV keeps, is one thread, far too slow for 1080p video."""
    stream.codec_context.thread_count = 0
    stream.codec_context.thread_type = "FRAME"


def packet_seconds(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def frame_bytes(pix_fmt: str, width: int, height: int) -> int:
    rows, cols = chroma_size(pix_fmt, width, height)
    return width * height + 2 * rows * cols


def transfer_to_picture(array: np.ndarray, pix_fmt: str, width: int, height: int) -> av.VideoFrame:
    """A frame's packed bytes (1-D uint8) as a PyAV frame in `pix_fmt`. 4:2:0 layouts are wrapped, not
    copied: FFmpeg copies a frame it does not own when it is sent to the encoder, so the bytes may be
    reused once `encode` returned."""
    if pix_fmt == "yuv444p":
        return av.VideoFrame.from_ndarray(array.reshape(3, height, width), format=pix_fmt)
    return av.VideoFrame.from_numpy_buffer(array.reshape(height * 3 // 2, width), format=pix_fmt)


def rgb_to_picture(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """An RGB uint8 [H, W, 3] frame for an encoder taking `pix_fmt` (yuv420p or yuv444p). For yuv420p
    OpenCV converts (BT.601 limited range, like swscale's default) several times faster than PyAV's
    rgb24 import plus swscale. (Imported here: the encoder process, which imports this module, has no
    use for OpenCV.)"""
    import cv2

    if pix_fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)
