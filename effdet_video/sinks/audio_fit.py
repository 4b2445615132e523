"""Whether the input's audio can be copied into the output container, decided before the run.

A muxer may accept a stream and still refuse it at the trailer (FLAC or Opus into .mov: "Invalid
argument" once the whole video is encoded). So the check is a dry run of the copy: the container's
header, the first packets of every audio stream and its trailer, written to memory."""
from __future__ import annotations

import io
from pathlib import Path

import av

from effdet_video.errors import UserError

# The muxer of each output extension (sinks/encoding.py's DEFAULT_CODECS lists the same extensions).
MUXERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
DRY_RUN_PACKETS = 8  # per audio stream


def check_audio_fits(input_path: Path, output: Path) -> None:
    """A UserError naming the input if its audio cannot be copied into `output`'s container."""
    muxer = MUXERS.get(output.suffix.lower())
    if muxer is None:
        return  # the video writer refuses the extension itself
    with av.open(str(input_path)) as source:
        streams = list(source.streams.audio)
        if not streams:
            return
        problem = _dry_run(source, streams, muxer)
        if problem is not None:
            codecs = ", ".join(sorted({s.codec_context.name for s in streams}))
            raise UserError(f"{input_path}: its audio ({codecs}) cannot be copied into a {output.suffix} file "
                            f"({problem}); leave the audio out, or use another extension (.mkv holds most codecs)")


def _dry_run(source: av.container.InputContainer, streams: list[av.audio.stream.AudioStream],
             muxer: str) -> str | None:
    """Copy the first packets of `streams` into an in-memory `muxer` container; why it failed, or None."""
    output = av.open(io.BytesIO(), mode="w", format=muxer)
    try:
        targets = {s.index: output.add_stream_from_template(s) for s in streams}
        output.start_encoding()
        copied = dict.fromkeys(targets, 0)
        for packet in source.demux(streams):
            if not packet.size or copied[packet.stream.index] >= DRY_RUN_PACKETS:
                if all(count >= DRY_RUN_PACKETS for count in copied.values()):
                    break
                continue
            copied[packet.stream.index] += 1
            packet.stream = targets[packet.stream.index]
            output.mux(packet)
        output.close()
    except (av.error.FFmpegError, ValueError) as error:
        return (getattr(error, "strerror", None) or str(error)).splitlines()[0]
    return None
