"""The encoding and muxing of an annotated video file, in a process of its own (the file writer's child,
see video_sink.py), fed with frames through shared memory.

Why a process: libx264 is fed by a Python thread that must take the GIL back after every FFmpeg call
(send a frame, take each packet, mux it). With the pipeline's other threads running bytecode, each of
those hand-overs waits up to the switch interval, and one busy thread beside it cut x264's rate to a
fraction (docs/performance.md has the figures). Here its thread is alone with its GIL.

Messages, over two one-way pipes:
    parent -> child (frames):  the EncodeJob, then (slot, pts, time_base, duration) per frame in order,
                               then None
    child -> parent (events):  ("ready",) once the output is open; ("free", slot) once a slot's pixels
                               are the encoder's (FFmpeg copied them); ("done", phases) once the file
                               is complete and closed (phases: seconds spent opening, from the
                               first frame to the last, waiting for frames in between, draining;
                               and, as time.monotonic() readings, which every process of the machine
                               shares, when the first frame came and when the file was complete);
                               or ("error", message) after which the child stops.
The parent publishes the file (it owns the name); if the parent goes away first the frames pipe ends
(EOF) and the child removes the unfinished file itself.

The child is started as this module (`python -m effdet_video.sinks.encode_process FRAMES EVENTS SLOTS`,
three inherited descriptors), not through multiprocessing's spawn, which runs the parent's main module
again in the child: under the command line that imported torch and the whole package (seconds, and
half a gigabyte per encoder). This module imports no torch and no OpenCV; the job is the first message.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys
import time
from fractions import Fraction
from multiprocessing.connection import Connection
from typing import Iterator

import av
import numpy as np

from effdet_video.sinks.encoder_slots import map_slots
from effdet_video.sinks.encoding import packet_seconds, transfer_to_picture, use_all_cores


@dataclasses.dataclass(frozen=True)
class EncodeJob:
    """What the child needs to write the file (picklable: it crosses to a spawned process)."""

    temporary: str          # the file written; the parent renames it when done
    codec: str
    options: dict[str, str]
    pix_fmt: str            # the slots' layout too (stages/canvas.py's transfer layouts)
    width: int
    height: int
    rate: Fraction
    time_base: Fraction
    rotation: int
    colour: tuple[int, int, int, int]  # the input's colorspace, range, primaries, transfer (FFmpeg's codes)
    audio_from: str | None  # the input whose audio streams are copied packet by packet
    slots: int              # the slots' memory: `slots` frames of `frame_bytes` uint8
    frame_bytes: int


class _OutputFile:
    """The output container: the video stream from `job`, the input's audio streams copied and
    interleaved by time."""

    def __init__(self, job: EncodeJob) -> None:
        self._audio_input: av.container.InputContainer | None = None
        try:
            self._output = av.open(job.temporary, mode="w")
        except (av.error.FFmpegError, ValueError) as error:
            raise _Refused(f"cannot write this kind of file ({error})") from None
        try:
            self._video = self._add_video_stream(job)
            self._audio = self._add_audio_streams(job.audio_from) if job.audio_from else iter(())
            self._pending_audio = next(self._audio, None)
            self._output.start_encoding()
        except BaseException:
            self.close()
            raise

    def _add_video_stream(self, job: EncodeJob) -> av.video.stream.VideoStream:
        try:
            stream = self._output.add_stream(job.codec, rate=job.rate, options=job.options)
        except (av.error.FFmpegError, ValueError) as error:
            raise _Refused(f"video codec {job.codec!r} is not available ({error})") from None
        stream.width, stream.height, stream.pix_fmt = job.width, job.height, job.pix_fmt
        use_all_cores(stream)
        context = stream.codec_context
        # The pixels are the input's own YUV: tagged as the input was, a player shows them the same way.
        context.colorspace, context.color_range, context.color_primaries, context.color_trc = job.colour
        stream.time_base = job.time_base
        stream.codec_context.time_base = job.time_base
        if job.rotation:
            stream.set_display_rotation(job.rotation)
        return stream

    def _add_audio_streams(self, path: str) -> Iterator[av.Packet]:
        """Output audio streams made from the input's (same codec, parameters and time base), and the
        input's audio packets read through a handle of our own on the input file."""
        self._audio_input = av.open(path, mode="r")
        inputs = list(self._audio_input.streams.audio)
        targets = {s.index: self._output.add_stream_from_template(s) for s in inputs}
        return self._remapped(self._audio_input.demux(inputs), targets) if inputs else iter(())

    @staticmethod
    def _remapped(packets: Iterator[av.Packet], targets: dict[int, av.stream.Stream]) -> Iterator[av.Packet]:
        for packet in packets:
            if packet.size == 0:  # the demuxer's end-of-stream marker, not data
                continue
            packet.stream = targets[packet.stream.index]
            yield packet

    def write(self, picture: av.VideoFrame) -> None:
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
        self.close()

    def close(self) -> None:
        for container in (self._output, self._audio_input):
            if container is not None:
                container.close()


class _Refused(Exception):
    """The output cannot be made as asked (its message is the user's one line)."""


def _open(job: EncodeJob) -> _OutputFile:
    try:
        return _OutputFile(job)
    except _Refused:
        raise
    except (av.error.FFmpegError, ValueError) as error:
        raise _Refused(f"cannot write the output ({error}); for an audio codec this container cannot "
                       "hold, leave the audio out or use another extension") from None


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0][:300]


def _say(events: Connection, *message: object) -> None:
    try:
        events.send(message)
    except OSError:  # the parent is gone; the frames pipe tells the loop so
        pass


def serve(job: EncodeJob, slots: np.ndarray, frames: Connection, events: Connection) -> None:
    """The child's whole life: open the output, encode every frame sent, finish, say how it went."""
    _encode_all(job, slots, frames, events)
    # Everything is closed and reported: skip the interpreter's own teardown, which spent seconds in the
    # encoding libraries' finalisation while the parent waited to publish the file.
    sys.stderr.flush()
    os._exit(0)


def _encode_all(job: EncodeJob, slots: np.ndarray, frames: Connection, events: Connection) -> None:
    opening = time.perf_counter()
    try:
        output = _open(job)
    except Exception as error:  # noqa: BLE001 - every failure is reported as one line
        _say(events, "error", str(error) if isinstance(error, _Refused) else _one_line(error))
        return
    phases = {"open_s": time.perf_counter() - opening}
    _say(events, "ready")
    try:
        first, starved = None, 0.0
        while True:
            asked = time.perf_counter()
            if (message := frames.recv()) is None:
                break
            if first is None:
                first, phases["first_frame_at"] = time.perf_counter(), time.monotonic()
            else:
                starved += time.perf_counter() - asked
            slot, pts, time_base, duration = message
            picture = transfer_to_picture(slots[slot], job.pix_fmt, job.width, job.height)
            picture.pts, picture.time_base, picture.duration = pts, time_base, duration
            output.write(picture)
            del picture
            _say(events, "free", slot)
        last = time.perf_counter()
        output.finish()
    except EOFError:  # the parent is gone or gave up: nobody will publish this file
        _discard(output, job)
        return
    except Exception as error:  # noqa: BLE001 - the parent turns it into its one-line error
        _discard(output, job)
        _say(events, "error", f"writing failed ({_one_line(error)})")
        return
    phases.update(frames_s=last - (first or last), starved_s=starved, finish_s=time.perf_counter() - last,
                  done_at=time.monotonic())
    _say(events, "done", {k: round(v, 4) for k, v in phases.items()})


def _discard(output: _OutputFile, job: EncodeJob) -> None:
    with contextlib.suppress(Exception):  # the file goes either way; the first error is what matters
        output.close()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(job.temporary)


def main() -> None:
    """The child's entry point: FRAMES, EVENTS (pipe ends) and SLOTS (the slots' memory) descriptors."""
    frames, events = Connection(int(sys.argv[1])), Connection(int(sys.argv[2]))
    try:
        job = frames.recv()
    except EOFError:  # the parent went before it sent the job
        os._exit(0)
    _mapping, slots = map_slots(int(sys.argv[3]), job.slots, job.frame_bytes)
    serve(job, slots, frames, events)


if __name__ == "__main__":
    main()
