"""Encoding the annotated frames with PyAV and muxing the input's audio back in, untouched.

Timing is copied, not re-derived: the output stream uses the input's time base and every frame keeps
its pts and duration, so variable frame rate survives. The size is kept exactly (odd sizes switch to
4:4:4 chroma, which has no even-size constraint), and the input's display rotation is written back.
"""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import cv2
import numpy as np

from effdet_video.errors import UserError
from effdet_video.pipeline.frames import FrameRecord
from effdet_video.stages.base import FrameSink
from effdet_video.stages.output_file import PartialFile
from effdet_video.stages.prepare import to_coded_orientation
from effdet_video.stages.source import VideoInfo, open_container

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
    """yuv420p where possible (plays everywhere); yuv444p for odd sizes, which 4:2:0 cannot store."""
    formats = {f.name for f in (av.Codec(codec, "w").video_formats or ())}
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


def rgb_to_picture(image: np.ndarray, pix_fmt: str) -> av.VideoFrame:
    """RGB uint8 [H, W, 3] -> a PyAV frame in `pix_fmt`. For yuv420p OpenCV converts (BT.601 limited
    range, like swscale's default) about 8x faster than PyAV's rgb24 import plus swscale at 1080p."""
    if pix_fmt == "yuv420p":
        return av.VideoFrame.from_ndarray(cv2.cvtColor(image, cv2.COLOR_RGB2YUV_I420), format="yuv420p")
    return av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format=pix_fmt)


def packet_seconds(packet: av.Packet) -> float:
    stamp = packet.dts if packet.dts is not None else packet.pts
    return float(stamp * packet.time_base) if stamp is not None else 0.0


def use_all_cores(stream: av.video.stream.VideoStream) -> None:
    """Let the encoder use every core, as the ffmpeg command does ("threads auto"): FFmpeg's own default
    for a codec context, which PyAV keeps, is one thread (libx264 at 1080p then encodes ~50 fps)."""
    stream.codec_context.thread_count = 0
    stream.codec_context.thread_type = "FRAME"


class VideoFileSink(FrameSink):
    """Annotated video file; audio streams of the input are copied packet by packet, interleaved by time."""

    needs_image = True

    def __init__(self, output: Path, info: VideoInfo, codec: str | None = None, crf: int = 20,
                 preset: str = "veryfast", audio: bool = True) -> None:
        self.info = info
        self._file = PartialFile(output)
        self._audio_input: av.container.InputContainer | None = None
        try:
            self._output = av.open(str(self._file.temporary), mode="w")
        except (av.error.FFmpegError, ValueError) as error:
            raise UserError(f"{output}: cannot write this kind of file ({error})") from None
        try:
            self._video = self._add_video_stream(codec or default_codec(output), crf, preset)
            self._audio = self._add_audio_streams() if audio else iter(())
            self._pending_audio = next(self._audio, None)
            self._output.start_encoding()
        except (av.error.FFmpegError, ValueError) as error:
            self.abort()
            raise UserError(f"{output}: cannot write the output ({error}); for an audio codec this "
                            "container cannot hold, use --no-audio or another extension") from None
        except BaseException:
            self.abort()
            raise

    def _add_video_stream(self, codec: str, crf: int, preset: str) -> av.video.stream.VideoStream:
        info = self.info
        try:
            stream = self._output.add_stream(codec, rate=info.rate or Fraction(30),
                                             options=encoder_options(codec, crf, preset))
        except (av.error.FFmpegError, ValueError) as error:
            raise UserError(f"video codec {codec!r} is not available ({error})") from None
        stream.width, stream.height = info.width, info.height
        stream.pix_fmt = encoder_pixel_format(codec, info.width, info.height)
        use_all_cores(stream)
        stream.time_base = info.time_base
        stream.codec_context.time_base = info.time_base
        if info.rotation:
            stream.set_display_rotation(info.rotation)
        return stream

    def _add_audio_streams(self) -> Iterator[av.Packet]:
        """Output audio streams made from the input's (same codec, parameters and time base) and the
        input's audio packets, read through a second handle on the input file so that audio needs no
        buffering between the decode and the sink thread."""
        self._audio_input = open_container(self.info.path)
        inputs = list(self._audio_input.streams.audio)
        if not inputs:
            return iter(())
        targets = {s.index: self._output.add_stream_from_template(s) for s in inputs}
        return self._remapped(self._audio_input.demux(inputs), targets)

    @staticmethod
    def _remapped(packets: Iterator[av.Packet], targets: dict[int, av.stream.Stream]) -> Iterator[av.Packet]:
        for packet in packets:
            if packet.size == 0:  # the demuxer's end-of-stream marker, not data
                continue
            packet.stream = targets[packet.stream.index]
            yield packet

    def render(self, record: FrameRecord) -> None:
        """Back to the coded orientation and to the encoder's pixel format (parallel, annotate pool)."""
        image = np.ascontiguousarray(to_coded_orientation(record.image, record.rotation))
        record.encoded["video"] = rgb_to_picture(image, self._video.pix_fmt)

    def write(self, record: FrameRecord) -> None:
        picture = record.encoded.pop("video")
        picture.pts = record.pts
        picture.time_base = record.time_base
        picture.duration = record.duration
        self._mux_video(self._video.encode(picture))

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self._mux_audio_until(packet_seconds(packet))
            self._output.mux(packet)

    def _mux_audio_until(self, seconds: float) -> None:
        while self._pending_audio is not None and packet_seconds(self._pending_audio) <= seconds:
            self._output.mux(self._pending_audio)
            self._pending_audio = next(self._audio, None)

    def finish(self) -> None:
        self._mux_video(self._video.encode(None))
        self._mux_audio_until(float("inf"))
        self._close()
        self._file.commit()

    def _close(self) -> None:
        for container in (self._output, self._audio_input):
            if container is not None:
                container.close()

    def abort(self) -> None:
        try:
            self._close()
        except Exception:  # noqa: BLE001 - the file is removed anyway; the first error is what matters
            pass
        self._file.discard()
