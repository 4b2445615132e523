"""The annotated video file: frames converted for the encoder here (annotate pool), encoded and muxed
with the input's audio, untouched, by a child process (encode_process.py, which says why).

Timing is copied, not re-derived: the output stream uses the input's time base and every frame keeps
its pts and duration, so variable frame rate survives. The size is kept exactly (odd sizes switch to
4:4:4 chroma, which has no even-size constraint), and the input's display rotation is written back.
"""
from __future__ import annotations

import multiprocessing
import queue
import shutil
import threading
from fractions import Fraction
from multiprocessing import shared_memory
from pathlib import Path

import numpy as np

from effdet_video.errors import UserError
from effdet_video.pipeline.frames import FrameRecord
from effdet_video.stages import encode_process
from effdet_video.stages.base import FrameSink
from effdet_video.stages.encoding import (default_codec, encoder_options, encoder_pixel_format, rgb_to_transfer,
                                          transfer_shape)
from effdet_video.stages.output_file import PartialFile
from effdet_video.stages.prepare import to_coded_orientation
from effdet_video.stages.source import VideoInfo

# Frames handed over at once: the child copies each out as soon as it reads it, so a few suffice.
SLOTS = 4
# How long the child may take to open the output, and to finish it once the last frame is sent
# (x264 still has its lookahead to encode). Beyond that it is taken for hung.
OPEN_TIMEOUT_S = 60.0
FINISH_TIMEOUT_S = 300.0
_FAILED = -1  # on the free-slot queue: the child stopped; its error is in `_error`
SHARED_MEMORY_DIR = "/dev/shm"


def _check_shared_memory(size: int) -> None:
    """A full /dev/shm turns a write into the shared slots into SIGBUS: refuse up front instead (a
    container's default is 64 MB, which 4K frames in RGB exceed)."""
    try:
        free = shutil.disk_usage(SHARED_MEMORY_DIR).free
    except OSError:  # no such folder: not Linux's shared memory, nothing to check
        return
    if free < size:
        raise UserError(f"{SHARED_MEMORY_DIR} has {free >> 20} MiB free and the video encoder needs "
                        f"{-(-size >> 20)} MiB ({SLOTS} frames); enlarge it (e.g. docker run --shm-size=1g)")


class VideoFileSink(FrameSink):
    """Annotated video file; audio streams of the input are copied packet by packet, interleaved by time."""

    needs_image = True

    def __init__(self, output: Path, info: VideoInfo, codec: str | None = None, crf: int = 20,
                 preset: str = "veryfast", audio: bool = True) -> None:
        self.info = info
        self.output = output
        codec = codec or default_codec(output)
        self._pix_fmt = encoder_pixel_format(codec, info.width, info.height)
        self._file = PartialFile(output)
        shape = transfer_shape(self._pix_fmt, info.width, info.height)
        size = SLOTS * int(np.prod(shape))
        _check_shared_memory(size)
        self._memory = shared_memory.SharedMemory(create=True, size=size)
        self._slots = np.ndarray((SLOTS, *shape), dtype=np.uint8, buffer=self._memory.buf)
        self._free: queue.Queue[int] = queue.Queue()
        for slot in range(SLOTS):
            self._free.put(slot)
        self._error: str | None = None
        self._ready, self._done = threading.Event(), threading.Event()
        job = encode_process.EncodeJob(
            temporary=str(self._file.temporary), codec=codec,
            options=encoder_options(codec, crf, preset), pix_fmt=self._pix_fmt, width=info.width,
            height=info.height, rate=info.rate or Fraction(30), time_base=info.time_base,
            rotation=info.rotation, audio_from=str(info.path) if audio else None, memory=self._memory.name,
            slots=SLOTS, slot_shape=shape)
        context = multiprocessing.get_context("spawn")  # the parent has CUDA and threads: no fork
        child_frames, self._frames = context.Pipe(duplex=False)
        self._events, child_events = context.Pipe(duplex=False)
        self._process = context.Process(target=encode_process.serve, args=(job, child_frames, child_events),
                                        name="effdet-encoder", daemon=True)
        try:
            self._process.start()
        except BaseException:
            self._release()
            raise
        child_frames.close()  # ours closed, the child's ends see EOF when the other side goes
        child_events.close()
        self._listener = threading.Thread(target=self._listen, name="effdet-encoder-events", daemon=True)
        self._listener.start()
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
                    self._free.put(rest[0])
                elif kind == "ready":
                    self._ready.set()
                elif kind == "done":
                    break
                else:
                    self._error = rest[0]
                    break
        except (EOFError, OSError):
            self._process.join(1.0)
            self._error = self._error or f"the encoder process stopped (exit code {self._process.exitcode})"
        self._done.set()
        self._ready.set()
        self._free.put(_FAILED)

    def _failure(self) -> UserError:
        return UserError(f"{self.output}: {self._error or 'the encoder process did not answer'}")

    def render(self, record: FrameRecord) -> None:
        """Back to the coded orientation and to the encoder's layout (parallel, annotate pool)."""
        image = np.ascontiguousarray(to_coded_orientation(record.image, record.rotation))
        record.encoded["video"] = rgb_to_transfer(image, self._pix_fmt)

    def write(self, record: FrameRecord) -> None:
        pixels = record.encoded.pop("video")
        slot = self._free.get()
        if slot == _FAILED:
            self._free.put(_FAILED)
            raise self._failure()
        np.copyto(self._slots[slot], pixels)
        self._send((slot, record.pts, record.time_base, record.duration))

    def _send(self, message: tuple | None) -> None:
        try:
            self._frames.send(message)
        except OSError:  # the child is gone: its listener is about to say why
            self._done.wait(5.0)
            raise self._failure() from None

    def finish(self) -> None:
        self._send(None)
        self._done.wait(FINISH_TIMEOUT_S)
        self._process.join(5.0)
        if self._error is not None or not self._done.is_set() or self._process.exitcode != 0:
            self.abort()
            raise self._failure()
        self._release()
        self._file.commit()

    def abort(self) -> None:
        """Stop the child (closing the frames pipe ends its loop; it removes its file) and the file."""
        self._frames.close()
        self._process.join(5.0)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        self._release()
        self._file.discard()

    def _release(self) -> None:
        self._slots = None
        try:
            self._memory.close()
        except BufferError:  # a writer thread left behind by a stop still holds a view: unlinked anyway
            pass
        try:
            self._memory.unlink()
        except FileNotFoundError:  # released already (abort after finish, or twice)
            pass
