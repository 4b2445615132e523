"""The annotated video file: boxes drawn straight into the decoded frame's YUV planes, in shared-memory
slots that a child process encodes and muxes with the input's audio, untouched (encode_process.py says
why a process). No frame is converted to RGB and back: the only heavy work left on the CPU is the
encoder's.

- Host frames (software decoding): the annotate pool copies each frame into a slot (converting it
  once, where the encoder cannot take its layout: odd sizes as 4:4:4, 10-bit and other formats as
  4:2:0) and draws into the slot.
- NVDEC's frames in GPU memory: every box of a group of frames is drawn there at once (ops/paint.py),
  then each frame is copied by DMA straight into its page-locked slot and encoded as the nv12 it is.

Boxes are drawn in the coded orientation the encoder takes (coordinates turned, not pixels), in the
input's colour matrix and range. Timing is copied, not re-derived: the output stream uses the input's
time base and every frame keeps its pts and duration, so variable frame rate survives. The size is
kept exactly (odd sizes switch to 4:4:4 chroma, which has no even-size constraint), and the input's
display rotation and colour tags are written back.
"""
from __future__ import annotations

import multiprocessing
import os
import select
import subprocess
import sys
import threading
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from effdet_video.core.frames import FrameRecord
from effdet_video.errors import UserError
from effdet_video.ops.colour import ColourMatrix
from effdet_video.ops.paint import PaintList, paint, paint_group, warm_up_painting
from effdet_video.sinks import encode_process
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.encoder_slots import SlotPool, SlotsClosed
from effdet_video.sinks.encoding import default_codec, encoder_options, encoder_pixel_format, frame_bytes
from effdet_video.sinks.output_file import PartialFile
from effdet_video.sources.source import VideoInfo
from effdet_video.stages.annotate import PlaneGeometry, paint_lists
from effdet_video.stages.canvas import SUBSAMPLING, GpuFrame, byte_layout, chroma_size, pack_picture, packed_planes

if TYPE_CHECKING:
    import torch

# Containers that store only strictly increasing timestamps per stream (the MP4 family): a frame that
# repeats an earlier frame's pts (variable-frame-rate sources have them) is moved one tick later there.
STRICT_TIMESTAMPS = (".mp4", ".m4v", ".mov")
# How long the child may take to open the output, and to finish it once the last frame is sent
# (x264 still has its lookahead to encode). Beyond that it is taken for hung.
OPEN_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 300.0


class VideoFileSink(FrameSink):
    """Annotated video file; audio streams of the input are copied packet by packet, interleaved by time.
    `labels` name the classes on the boxes. Once finished, `phases` has the encoder process's seconds:
    opening the output, from its first frame to its last, the part of that spent waiting for frames
    (starved: the pipeline, not the encoder, was the bound), and draining and closing it."""

    needs_canvas = True

    def __init__(self, output: Path, info: VideoInfo, codec: str | None = None, crf: int = 20,
                 preset: str = "veryfast", audio: bool = True, labels: dict[int, str] | None = None) -> None:
        self.info = info
        self.output = output
        self.labels = labels
        self._strict_timestamps = output.suffix.lower() in STRICT_TIMESTAMPS
        self._last_pts: int | None = None
        self.moved_timestamps = 0
        codec = codec or default_codec(output)
        self._pix_fmt = encoder_pixel_format(codec, info.width, info.height, byte_layout(info.pix_fmt))
        colorspace, color_range = info.colour[:2]
        self._geometry = PlaneGeometry(info.height, info.width, info.rotation, SUBSAMPLING[self._pix_fmt],
                                       ColourMatrix.of_stream(colorspace, color_range, info.width, info.height,
                                                              info.pix_fmt))
        size = frame_bytes(self._pix_fmt, info.width, info.height)
        self._file = PartialFile(output)
        self._slots = SlotPool(size)
        self._error: str | None = None
        self.phases: dict[str, float] = {}
        self._ready, self._done = threading.Event(), threading.Event()
        job = encode_process.EncodeJob(
            temporary=str(self._file.temporary), codec=codec,
            options=encoder_options(codec, crf, preset), pix_fmt=self._pix_fmt, width=info.width,
            height=info.height, rate=info.rate or Fraction(30), time_base=info.time_base,
            rotation=info.rotation, colour=info.colour, audio_from=str(info.path) if audio else None,
            slots=self._slots.count, frame_bytes=size)
        child_frames, self._frames = multiprocessing.Pipe(duplex=False)
        self._events, child_events = multiprocessing.Pipe(duplex=False)
        inherited = (child_frames.fileno(), child_events.fileno(), self._slots.descriptor)
        try:
            self._process = _start_encoder(inherited)
        except BaseException:
            self._release()
            raise
        finally:
            child_frames.close()  # ours closed, the child's ends see EOF when the other side goes
            child_events.close()
        self._listener = threading.Thread(target=self._listen, name="effdet-encoder-events", daemon=True)
        self._listener.start()
        try:
            self._send(job)
            if info.gpu is not None and self._pix_fmt == "nv12":  # frames will come from GPU memory:
                self._slots.pin()  # ready for their DMA, and the painting kernels loaded, while the
                warm_up_painting(f"cuda:{info.gpu}")  # child starts and opens the output
        except BaseException:
            self.abort()
            raise
        self._ready.wait(OPEN_TIMEOUT_S)
        if self._error is not None or not self._ready.is_set():
            self.abort()
            raise self._failure()

    def _listen(self) -> None:
        """The child's events: free slots back to the queue; readiness, completion and failure flagged."""
        try:
            while True:
                kind, *rest = self._events.recv()
                if kind == "free":
                    self._slots.release(rest[0])
                elif kind == "ready":
                    self._ready.set()
                elif kind == "done":
                    self.phases = rest[0]
                    break
                else:
                    self._error = rest[0]
                    break
        except (EOFError, OSError):
            self._error = self._error or f"the encoder process stopped (exit code {self._exit_code(1.0)})"
        self._done.set()
        self._ready.set()
        self._slots.close(self._error or "the encoder process finished")

    def _failure(self) -> UserError:
        return UserError(f"{self.output}: {self._error or 'the encoder process did not answer'}")

    def render_group(self, records: Sequence[FrameRecord]) -> None:
        """Frames in GPU memory that go to the encoder as they are: all their boxes drawn at once."""
        groups: dict[int, list[FrameRecord]] = {}
        for record in records:
            if isinstance(record.canvas, GpuFrame) and self._pix_fmt == "nv12":
                groups.setdefault(id(record.canvas.frames), []).append(record)
        for group in groups.values():
            frames = group[0].canvas.frames
            drawn = [(r.canvas.index, self._paint_lists(r)) for r in group]
            paint_group(frames.data, 0, (frames.height, frames.width), 1, [(i, d.luma) for i, d in drawn])
            paint_group(frames.data, frames.height * frames.width, chroma_size("nv12", frames.width, frames.height), 2,
                        [(i, d.chroma) for i, d in drawn])

    def render(self, record: FrameRecord) -> None:
        """The frame into its slot, boxes drawn (annotate pool: in parallel, any order)."""
        canvas, record.canvas = record.canvas, None
        on_gpu = isinstance(canvas, GpuFrame)
        if on_gpu and self._pix_fmt != "nv12":
            canvas, on_gpu = canvas.download(), False
        if not on_gpu and byte_layout(canvas.format.name) != self._pix_fmt:
            canvas = canvas.reformat(format=self._pix_fmt)  # the one conversion: odd sizes, 10-bit, ...
        try:
            slot = self._slots.acquire(record.index)
        except SlotsClosed:
            raise self._failure() from None
        packed = self._slots.array[slot]
        if on_gpu:
            record.encoded["video"] = (slot, _copy_from_gpu(canvas, packed))
            return
        pack_picture(canvas, packed)
        luma, chroma = packed_planes(packed, self._pix_fmt, self.info.width, self.info.height)
        drawn = self._paint_lists(record)
        paint(luma, drawn.luma)
        paint(chroma, drawn.chroma)
        record.encoded["video"] = (slot, None)

    @property
    def slots_pinned(self) -> bool:
        """Whether GPU frames reach the slots by DMA (`bench --video` reports it)."""
        return self._slots.pinned

    def _paint_lists(self, record: FrameRecord) -> PaintList:
        return paint_lists(record.detections, self._geometry, self.labels, record.track_ids, record.trails)

    def write(self, record: FrameRecord) -> None:
        slot, copied = record.encoded.pop("video")
        if copied is not None:
            copied.synchronize()
        pts = record.pts
        if self._strict_timestamps and self._last_pts is not None and pts <= self._last_pts:
            pts = self._last_pts + 1
            self.moved_timestamps += 1
        self._last_pts = pts
        self._send((slot, pts, record.time_base, record.duration))

    def warnings(self) -> list[str]:
        """What the output could not keep of the input, a line each."""
        if not self.moved_timestamps:
            return []
        tick_ms = float(self.info.time_base) * 1e3
        return [f"{self.output}: {self.moved_timestamps} frames repeat an earlier frame's timestamp, which "
                f"{self.output.suffix} cannot store; each was moved {tick_ms:g} ms later (.mkv keeps them)"]

    def _send(self, message: tuple | None) -> None:
        try:
            self._frames.send(message)
        except OSError:  # the child is gone: its listener is about to say why
            self._done.wait(5.0)
            raise self._failure() from None

    def finish(self) -> None:
        self._send(None)
        self._done.wait(FINISH_TIMEOUT_S)
        if self._error is not None or not self._done.is_set():  # "done" comes once the file is closed
            self.abort()
            raise self._failure()
        self._release()
        self._file.commit()
        self._exit_code(5.0)  # the child said "done" and exits: reaped, not left behind

    def abort(self) -> None:
        """Stop the child (closing the frames pipe ends its loop; it removes its file) and the file."""
        self._frames.close()
        if self._exit_code(5.0) is None:
            self._process.kill()
            self._process.wait()
        self._release()
        self._file.discard()

    def _exit_code(self, wait_s: float) -> int | None:
        """The child's exit status once it ended within `wait_s`, else None."""
        return exit_code(self._process, wait_s)

    def _release(self) -> None:
        self._slots.release_memory()


ENCODER_PROCESS_ENVIRONMENT = {"OPENBLAS_NUM_THREADS": "1"}


def _start_encoder(descriptors: tuple[int, ...]) -> subprocess.Popen:
    """The encoder process, handed `descriptors` (see encode_process.main). In a session of its own, so
    that Ctrl-C reaches only the parent, which decides (closing the frames pipe ends the child); the
    package's folder on its path, as this process found the package.

    One OpenBLAS thread: the child computes nothing with numpy, but numpy's OpenBLAS starts a thread per
    core at import, and each spins before it sleeps, CPU taken from x264 and the pipeline while the
    child starts (docs/performance.md, item 13)."""
    package_root = str(Path(encode_process.__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH"))))
    return subprocess.Popen([sys.executable, "-m", encode_process.__name__, *map(str, descriptors)],
                            pass_fds=descriptors, stdin=subprocess.DEVNULL, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": path, **ENCODER_PROCESS_ENVIRONMENT})


def exit_code(process: subprocess.Popen, wait_s: float) -> int | None:
    """`process`'s exit status once it ended within `wait_s`, else None. Where the system can say when a
    process ends (a pidfd, Linux), this sleeps until then: subprocess's own timed wait polls in growing
    sleeps and notices an exit up to 50 ms late, on the way of every finished file."""
    if process.returncode is None and hasattr(os, "pidfd_open"):
        try:
            ended = os.pidfd_open(process.pid)
        except OSError:  # an older kernel: subprocess's polling below
            pass
        else:
            try:
                waiting = select.poll()  # not select(): a busy process's descriptors may pass 1023
                waiting.register(ended, select.POLLIN)
                waiting.poll(wait_s * 1000)
            finally:
                os.close(ended)
            wait_s = 0.0
    try:
        return process.wait(wait_s)
    except subprocess.TimeoutExpired:
        return None


def _copy_from_gpu(canvas: GpuFrame, packed: np.ndarray) -> torch.cuda.Event:
    """Queue the copy of a GPU frame into its slot; the event that says it is complete."""
    import torch

    source = canvas.frames.data[canvas.index]
    with torch.cuda.device(source.device):
        torch.from_numpy(packed).copy_(source, non_blocking=True)
        done = torch.cuda.Event(blocking=True)
        done.record()
    return done
