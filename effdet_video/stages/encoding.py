"""Choices about the encoded video shared by every writer of it (the file writer's encoder process, the
live stream output, the benchmark's peers): codec per extension, pixel format, options, threads, and
the conversion of annotated RGB frames into what the encoder takes."""
from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np

from effdet_video.errors import UserError

DEFAULT_CODECS = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264",
                  ".webm": "libvpx-vp9"}
QUALITY_CODECS = ("libx264", "libx265")  # codecs that take --crf and --preset


def default_codec(output: Path) -> str:
    codec = DEFAULT_CODECS.get(output.suffix.lower())
    if codec is None:
        raise UserError(f"{output}: unsupported output extension {output.suffix!r} "
                        f"(use one of {', '.join(DEFAULT_CODECS)})")
    return codec


def encoder_pixel_format(codec: str, width: int, height: int) -> str:
    """yuv420p where possible (plays everywhere); yuv444p for odd sizes, which 4:2:0 cannot store. The
    first look at `codec`: one that FFmpeg cannot encode with is the user's error here."""
    try:
        encoder = av.Codec(codec, "w")
    except ValueError as error:  # PyAV's UnknownCodecError
        raise UserError(f"video codec {codec!r} is not available ({error})") from None
    formats = {f.name for f in (encoder.video_formats or ())}
    for candidate in ("yuv420p", "yuv444p") if width % 2 == 0 and height % 2 == 0 else ("yuv444p",):
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
    for a codec context, which PyAV keeps, is one thread (libx264 at 1080p then encodes ~50 fps)."""
    stream.codec_context.thread_count = 0
    stream.codec_context.thread_type = "FRAME"


def packet_seconds(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def transfer_format(pix_fmt: str) -> str:
    """The layout in which frames reach the encoder: I420 itself, or RGB for PyAV to convert."""
    return "yuv420p" if pix_fmt == "yuv420p" else "rgb24"


def transfer_shape(pix_fmt: str, width: int, height: int) -> tuple[int, ...]:
    return (height * 3 // 2, width) if transfer_format(pix_fmt) == "yuv420p" else (height, width, 3)


def rgb_to_transfer(image: np.ndarray, pix_fmt: str) -> np.ndarray:
    """RGB uint8 [H, W, 3] -> the transfer layout. For yuv420p OpenCV converts (BT.601 limited range,
    like swscale's default) about 8x faster than PyAV's rgb24 import plus swscale at 1080p."""
    if transfer_format(pix_fmt) == "yuv420p":
        return cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420)
    return image


def transfer_to_picture(array: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """A transfer-layout array -> a PyAV frame in `pix_fmt` (the array is copied)."""
    picture = av.VideoFrame.from_ndarray(array, format=transfer_format(pix_fmt))
    return picture if picture.format.name == pix_fmt else picture.reformat(format=pix_fmt)


def rgb_to_picture(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    return transfer_to_picture(rgb_to_transfer(image, pix_fmt), pix_fmt)
