"""Small test clips made with PyAV, and a probe that reads back what the pipeline must preserve."""
from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import numpy as np


def encode_all(out: av.container.OutputContainer, stream: av.stream.Stream, frames: Iterable) -> None:
    """Encode and mux `frames` (video or audio), then flush the encoder."""
    for frame in frames:
        for packet in stream.encode(frame):
            out.mux(packet)
    for packet in stream.encode(None):
        out.mux(packet)


def sine_audio(samples: int) -> Iterator[av.AudioFrame]:
    """`samples` of a 48 kHz mono tone, 1024 at a time (AAC's frame size)."""
    for start in range(0, samples, 1024):
        chunk = np.sin(np.arange(start, start + 1024) / 20.0).astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = 48000, start
        yield frame


def make_clip(path: Path, frames: int, width: int = 64, height: int = 48, rate: int = 10,
              rotation: int = 0, audio: bool = False, pix_fmt: str = "yuv420p") -> Path:
    """A clip whose frame i is a moving gradient (so frames differ); optional 48 kHz AAC audio."""
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast"})
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        sound = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        ys, xs = np.mgrid[0:height, 0:width]

        def pictures() -> Iterator[av.VideoFrame]:
            for i in range(frames):
                image = np.stack([(xs * 4 + i * 8) % 256, (ys * 4) % 256, np.full_like(xs, 128)], -1).astype(np.uint8)
                picture = av.VideoFrame.from_ndarray(image, format="rgb24")
                picture.pts = i
                yield picture

        encode_all(out, video, pictures())
        if sound is not None:
            encode_all(out, sound, sine_audio(48000 * frames // rate))
    return path


@dataclasses.dataclass
class Probe:
    width: int
    height: int
    rotation: int
    time_base: Fraction
    pts: list[int]
    duration_s: float
    audio_packets: list[int]
    audio_codecs: list[str]
    video_codec: str
    pix_fmt: str

    @property
    def frames(self) -> int:
        return len(self.pts)


def probe(path: Path) -> Probe:
    """Decode every video frame of `path` (so a broken file fails here) and count its audio packets."""
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        pts, rotations = [], set()
        for picture in container.decode(video):
            pts.append(picture.pts)
            rotations.add(int(picture.rotation) % 360)
        info = dict(width=video.codec_context.width, height=video.codec_context.height,
                    time_base=video.time_base, video_codec=video.codec_context.name,
                    pix_fmt=video.codec_context.pix_fmt, duration_s=container.duration / av.time_base,
                    audio_codecs=[s.codec_context.name for s in container.streams.audio])
    with av.open(str(path)) as container:
        counts = {s.index: 0 for s in container.streams.audio}
        for packet in container.demux(*container.streams.audio) if counts else ():
            if packet.size:
                counts[packet.stream.index] += 1
    assert len(rotations) <= 1, f"frames of {path} disagree on rotation: {rotations}"
    return Probe(pts=pts, rotation=rotations.pop() if rotations else 0, audio_packets=list(counts.values()), **info)
