"""Decoding a video file with PyAV, on the CPU (threaded decoder) or on NVDEC (sources/hw_decode.py); corrupt
packets counted and skipped."""
from __future__ import annotations

import dataclasses
import itertools
import math
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator, Sequence

import av

from effdet_video.core.frames import FrameRecord
from effdet_video.engine.policy import cpu_threads
from effdet_video.errors import UserError
from effdet_video.sources.base import FrameSource
from effdet_video.sources.hw_decode import (
    DECODERS,
    gpu_preparable,
    nvdec_hwaccel,
    nvdec_problem,
    on_gpu,
    single_threaded,
)
from effdet_video.sources.input_damage import DamageLog

# FFmpeg's demuxers of single images (the image2 family: png_pipe, jpeg_pipe, ...).
_IMAGE_DEMUXERS = ("image2",)


def is_still_image(demuxer: str) -> bool:
    """Whether a container that FFmpeg opened with `demuxer` is a single image."""
    return demuxer in _IMAGE_DEMUXERS or demuxer.endswith("_pipe")


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """What the sinks need to know about the input video stream.

    width/height: coded size of the frames (before rotation); rotation: degrees counter-clockwise that
    a player applies for display, a multiple of 90; time_base: of the input stream, kept by the output;
    pix_fmt: the layout frames are decoded to (for NVDEC's frames in GPU memory, their nv12); colour:
    FFmpeg's colorspace, range, primaries and transfer codes of the frames (2, 0, 2, 2: untagged)."""

    path: Path
    width: int
    height: int
    time_base: Fraction
    rate: Fraction | None
    rotation: int
    codec: str
    pix_fmt: str = "yuv420p"
    colour: tuple[int, int, int, int] = (2, 0, 2, 2)
    still_image: bool = False  # a PNG, JPEG, ... (one frame; its annotated copy is an image)
    gpu: int | None = None  # the CUDA device whose memory NVDEC leaves the frames in; None: host memory


def frame_colour(picture: av.VideoFrame) -> tuple[int, int, int, int]:
    """A decoded frame's colour tags, as VideoInfo.colour keeps them."""
    return (int(picture.colorspace), int(picture.color_range), int(picture.color_primaries),
            int(picture.color_trc))


def decoded_format(picture: av.VideoFrame) -> str:
    """The layout of a decoded frame's pixels (a GPU frame's own, not 'cuda')."""
    return picture.sw_format.name if on_gpu(picture) else picture.format.name


def open_container(path: Path) -> av.container.InputContainer:
    """av.open with every failure turned into a one-line UserError."""
    if not path.exists():
        raise UserError(f"{path}: no such file")
    if not path.is_file():
        raise UserError(f"{path}: not a file")
    try:
        return av.open(str(path), mode="r")
    except av.error.FFmpegError as error:
        reason = getattr(error, "strerror", None) or str(error)
        raise UserError(f"{path}: not a readable video file ({reason}; is it truncated?)") from None


def display_rotation(picture: av.VideoFrame) -> int:
    """The frame's display-matrix rotation rounded to a quarter turn, in [0, 360)."""
    return int(round(picture.rotation / 90.0)) * 90 % 360


class VideoFileSource(FrameSource):
    """The first video stream of a file. Opening decodes the first frame, so that an unreadable input
    fails here, before any output is created.

    decoder: 'cpu' (FFmpeg's software decoder, frame-threaded), 'nvdec' (GPU `gpu_id`'s hardware decoder;
    a UserError where it cannot decode this stream) or 'auto' (NVDEC where it can, else the CPU, silently).
    `decoder_used` says which one decodes. Whatever was asked, a broken file gets the CPU decoder's error
    message, so that the message is about the file and not about the GPU.

    frames_on_gpu: NVDEC's frames stay in GPU memory (as nv12; the prepare stage letterboxes them there)
    instead of being downloaded; `frames_on_gpu` afterwards says whether they do (a stream NVDEC decodes
    to another layout, e.g. 10-bit, is downloaded as usual).

    decode_threads: the CPU decoder's frame threads (0: FFmpeg's choice, a thread per core and one more;
    see `decode_threads_beside_encoder`)."""

    def __init__(self, path: Path, decoder: str = "cpu", gpu_id: int = 0, frames_on_gpu: bool = False,
                 decode_threads: int = 0) -> None:
        if decoder not in DECODERS:
            raise ValueError(f"decoder {decoder!r}: expected one of {', '.join(DECODERS)}")
        self.path = path
        self.decode_threads = decode_threads
        self.frames_on_gpu = False
        self.decoder_used = self._start_decoder(decoder, gpu_id, frames_on_gpu)
        first = self._first
        rate = self._stream.average_rate or self._stream.guessed_rate
        self.expected_frames = self._frame_count_hint(rate)
        self.info = VideoInfo(
            path=path,
            width=first.width,
            height=first.height,
            time_base=self._stream.time_base or Fraction(1, 90000),
            rate=rate,
            rotation=display_rotation(first),
            codec=self._stream.codec_context.name,
            pix_fmt=decoded_format(first),
            colour=frame_colour(first),
            still_image=is_still_image(self._container.format.name),
            gpu=gpu_id if self.frames_on_gpu else None,
        )
        period = max(1, round(1 / (rate * self.info.time_base))) if rate else 1
        self.damage = DamageLog(path, self.info.time_base, period)

    def _start(self, container: av.container.InputContainer, nvdec: bool = False) -> None:
        """Take `container` and decode its first frame; `container` is closed if that fails."""
        self.skipped_packets = 0
        self._container = container
        self._threaded = not nvdec
        try:
            self._stream = self._video_stream(nvdec)
            self._pictures = self._decode()
            first = next(self._pictures, None)
        except BaseException:
            container.close()
            raise
        if first is None:
            container.close()
            raise UserError(f"{self.path}: the video stream has no decodable frames")
        self._first: av.VideoFrame | None = first

    def _start_decoder(self, decoder: str, gpu_id: int, frames_on_gpu: bool) -> str:
        """Open the file and decode its first frame with `decoder`; which decoder does it."""
        if decoder != "cpu":
            problem = self._start_on_nvdec(gpu_id, frames_on_gpu)
            if frames_on_gpu and (problem is not None or not gpu_preparable(self._first)):
                if problem is None:  # a layout other than nv12 (10-bit, 4:4:4): decoded, then downloaded
                    self.close()
                problem = self._start_on_nvdec(gpu_id)
            if problem is None:
                self.frames_on_gpu = on_gpu(self._first)
                return "nvdec"
        self._start(open_container(self.path))
        if decoder == "nvdec":
            codec = self._stream.codec_context.name
            self.close()
            raise UserError(f"{self.path}: decoder 'nvdec': {problem} ({codec} stream; use decoder 'cpu' or 'auto')")
        return "cpu"

    def _start_on_nvdec(self, gpu_id: int, frames_on_gpu: bool = False) -> str | None:
        """Open the file on NVDEC and decode its first frame; why that is not possible (nothing is left
        open then), or None."""
        problem = nvdec_problem(gpu_id)
        if problem is not None:
            return problem
        try:
            container = av.open(str(self.path), mode="r", hwaccel=nvdec_hwaccel(gpu_id, frames_on_gpu))
        except av.error.FFmpegError as error:
            return f"FFmpeg could not open it for NVDEC ({error.strerror or error})"
        except RuntimeError:  # PyAV's "no stream is compatible": no video stream NVDEC decodes
            return "NVDEC does not decode its video codec"
        video = container.streams.video
        if not video or video[0].codec_context is None or not video[0].codec_context.is_hwaccel:
            container.close()
            return "NVDEC does not decode its video codec"
        try:
            self._start(container, nvdec=True)
        except av.error.FFmpegError as error:
            return f"NVDEC could not decode its first frame ({error.strerror or error})"
        except UserError:
            return "NVDEC decoded none of its frames"
        return None

    def _video_stream(self, nvdec: bool = False, threaded: bool = True) -> av.video.stream.VideoStream:
        if not self._container.streams.video:
            raise UserError(f"{self.path}: has no video stream")
        stream = self._container.streams.video[0]
        if stream.codec_context is None:
            raise UserError(f"{self.path}: unsupported video codec (this FFmpeg build has no decoder for it)")
        if nvdec or not threaded:
            single_threaded(stream.codec_context)
        else:
            stream.codec_context.thread_type = "AUTO"
            stream.codec_context.thread_count = self.decode_threads
        return stream

    def _frame_count_hint(self, rate: Fraction | None) -> int | None:
        """The container's frame count, else duration x average rate (Matroska stores no count)."""
        if self._stream.frames:
            return int(self._stream.frames)
        if self._container.duration and rate:
            return round(self._container.duration / av.time_base * float(rate))
        return None

    def _packets(self) -> Iterator[av.Packet | None]:
        """Demuxed packets, then None (flush the decoder). A demuxer error (damaged container) counts as
        one skipped packet and ends the stream, which keeps everything decoded so far."""
        packets = self._container.demux(self._stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.InvalidDataError:
                self.skipped_packets += 1
                yield None
                return
            yield packet

    def _decode(self) -> Iterator[av.VideoFrame]:
        """Every readable frame, in presentation order.

        A frame-threaded decoder that meets damage reports the error in place of the frames still in its
        threads (up to one per thread), which would be lost. So on such an error the file is opened again
        and decoded single-threaded (which loses nothing, only the bad packets) from the keyframe before
        the last frame delivered, and threaded again from the first keyframe past the damage; frames
        already delivered are not delivered twice."""
        delivered: int | None = None
        threaded, seek_to = self._threaded, None
        failed_at = -math.inf
        while True:
            resumed_after = None
            if seek_to is not None:
                self._reopen(threaded, seek_to)
                resumed_after = delivered
            try:
                for picture in self._decode_pass(threaded, resumed_after, failed_at):
                    if picture.pts is not None:
                        if resumed_after is not None and picture.pts <= resumed_after:
                            continue  # delivered before this pass started
                        delivered = picture.pts if delivered is None else max(delivered, picture.pts)
                    yield picture
                return
            except _ThreadedDecodeFailed as failure:
                threaded, seek_to, failed_at = False, delivered if delivered is not None else -math.inf, failure.at
            except _PastDamage as past:
                threaded, seek_to = True, past.keyframe

    def _decode_pass(self, threaded: bool, resumed_after: int | None, failed_at: float) -> Iterator[av.VideoFrame]:
        """Decode from where the container stands. Threaded: an error raises _ThreadedDecodeFailed. Not
        threaded (NVDEC, or the CPU decoder's fallback): bad packets are skipped and counted (in a pass
        resumed after pts `resumed_after`, only those past it: an earlier pass counted the others), and
        the fallback raises _PastDamage at the first keyframe past `failed_at`, once drained."""
        fallback = not threaded and self._threaded
        for packet in self._packets():
            if fallback and packet is not None and packet.is_keyframe and packet.pts is not None \
                    and packet.pts > failed_at:
                yield from self._stream.decode(None)
                raise _PastDamage(packet.pts)
            try:
                pictures = self._stream.decode(packet)
            except av.error.InvalidDataError:
                if threaded:
                    raise _ThreadedDecodeFailed(math.inf if packet is None or packet.pts is None else packet.pts)
                if packet is None or packet.pts is None or resumed_after is None or packet.pts > resumed_after:
                    self.skipped_packets += 1
                continue
            yield from pictures

    def _reopen(self, threaded: bool, seek_to: float) -> None:
        """A fresh container and decoder, positioned at the keyframe at or before pts `seek_to`. The old
        decoder is flushed first: freeing a frame-threaded decoder that failed mid-stream can hang."""
        self._stream.codec_context.flush_buffers()
        self._container.close()
        self._container = open_container(self.path)
        self._stream = self._video_stream(threaded=threaded)
        if seek_to != -math.inf:
            self._container.seek(int(seek_to), stream=self._stream, backward=True)

    def frames(self) -> Iterator[FrameRecord]:
        """Frames with their timestamps; a frame without pts (raw streams) gets the previous frame's
        pts plus its duration (or one nominal frame period). What damage cost is noted in `damage`."""
        time_base = self.info.time_base
        next_pts = 0
        for index, picture in enumerate(self._pictures_from_first()):
            pts = picture.pts if picture.pts is not None else next_pts
            duration = int(picture.duration or 0)
            next_pts = pts + (duration or self.damage.period)
            self.damage.frame(pts, duration)
            yield FrameRecord(index=index, pts=pts, time_base=time_base, duration=duration,
                              rotation=self.info.rotation, picture=picture)
        declared = self._container.duration
        self.damage.ended(declared / av.time_base if declared else None)

    def warnings(self) -> list[str]:
        """One line per thing the input lost (unreadable packets, missing frames, an early end), each
        naming the file; call after `frames` ended."""
        return self.damage.warnings(self.skipped_packets)

    def _pictures_from_first(self) -> Iterator[av.VideoFrame]:
        first, self._first = self._first, None
        if first is not None:
            yield first
        yield from self._pictures

    def close(self) -> None:
        self._container.close()


class _ThreadedDecodeFailed(Exception):
    """The frame-threaded decoder hit damage; `at`: pts of the packet it was given then (inf: at the end)."""

    def __init__(self, at: float) -> None:
        super().__init__(at)
        self.at = at


class _PastDamage(Exception):
    """The single-threaded fallback reached a keyframe past the damage (pts `keyframe`)."""

    def __init__(self, keyframe: int) -> None:
        super().__init__(keyframe)
        self.keyframe = keyframe


def decode_threads_beside_encoder() -> int:
    """The CPU decoder's frame threads where a video encoder runs beside it: half the cores. FFmpeg's own
    choice, a thread per core and one more, decodes fastest where decoding bounds the run; beside x264,
    which needs most of the cores, that many threads cost more CPU per frame than half as many, which
    still decode faster than the encoder encodes (docs/performance.md has the figures)."""
    return max(1, cpu_threads() // 2)


class VideoOpener:
    """Opens VideoFileSources with one decoder choice; NVDEC decoding goes to `gpu_ids` in turn (batch mode
    spreads its inputs over its engines' GPUs). Safe to call from several threads."""

    def __init__(self, decoder: str = "cpu", gpu_ids: Sequence[int] = (0,), frames_on_gpu: bool = False,
                 decode_threads: int = 0) -> None:
        self.decoder = decoder
        self.frames_on_gpu = frames_on_gpu
        self.decode_threads = decode_threads
        self._gpu_ids = itertools.cycle(gpu_ids)
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> VideoFileSource:
        with self._lock:
            gpu_id = next(self._gpu_ids)
        return VideoFileSource(path, self.decoder, gpu_id, self.frames_on_gpu, self.decode_threads)
