"""Damaged and cut-short Matroska clips, made the way ../shared/tools/make_media.py damages its clips
(bytes of the file overwritten, or the file cut), but aimed: the damage hits known packets."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import av
import numpy as np

from tests.support.pipeline_clips import encode_all, sine_audio


def make_noisy_mkv(path: Path, frames: int = 40, width: int = 160, height: int = 120, rate: int = 10,
                   gop: int = 10) -> Path:
    """H.264 + AAC in Matroska, a keyframe every `gop` frames and a cluster per half second (so that the
    demuxer can resynchronise after damage); grain makes every packet a few kB."""
    with av.open(str(path), "w", options={"cluster_time_limit": "500"}) as out:
        video = out.add_stream("libx264", rate=rate, options={"preset": "ultrafast", "g": str(gop)})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        sound = out.add_stream("aac", rate=48000, layout="mono")
        ys, xs = np.mgrid[0:height, 0:width]
        rng = np.random.default_rng(0)

        def pictures() -> Iterator[av.VideoFrame]:
            for i in range(frames):
                image = np.stack([(xs * 4 + i * 8) % 256, (ys * 4) % 256, np.full_like(xs, 128)], -1)
                image = np.clip(image + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
                picture = av.VideoFrame.from_ndarray(image, format="rgb24")
                picture.pts = i
                yield picture

        encode_all(out, video, pictures())
        encode_all(out, sound, sine_audio(48000 * frames // rate))
    return path


def video_packet_positions(path: Path) -> list[tuple[int, int, int]]:
    """(pts, byte position, size) of every video packet, in file order."""
    with av.open(str(path)) as container:
        return [(p.pts, p.pos, p.size) for p in container.demux(container.streams.video[0]) if p.size]


def damage_packets(src: Path, dst: Path, packets: list[int], audio_bytes: int = 0) -> Path:
    """Overwrite the first bytes of the video packets numbered `packets` (in file order) with 0xff: an
    H.264 NAL size no packet can hold, which the decoder rejects. `audio_bytes`: also overwrite that many
    bytes just before the first of them (an audio block and a Matroska header, lost to the demuxer)."""
    raw = bytearray(src.read_bytes())
    positions = video_packet_positions(src)
    for number in packets:
        _, pos, _ = positions[number]
        raw[pos:pos + 4] = b"\xff" * 4
    if audio_bytes:
        pos = positions[packets[0]][1] - 16
        raw[pos - audio_bytes:pos] = np.random.default_rng(1).integers(0, 256, audio_bytes, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(raw))
    return dst


def truncate(src: Path, dst: Path, fraction: float) -> Path:
    dst.write_bytes(src.read_bytes()[: int(src.stat().st_size * fraction)])
    return dst


def readable_frames(path: Path) -> list[int]:
    """The pts of every frame a single-threaded decoder gets out of `path`, skipping what it rejects:
    the most any decoder can deliver."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "NONE"
        stream.codec_context.thread_count = 1
        pts = []
        for packet in container.demux(stream):
            try:
                pts += [picture.pts for picture in packet.decode()]
            except av.error.InvalidDataError:
                continue
        return pts


def remux_to_mkv(src: Path, dst: Path, video_frames: int, cluster_ms: int = 200) -> Path:
    """The first `video_frames` video packets of `src` and the audio muxed before them, in Matroska with
    a cluster every `cluster_ms` (a real file's demuxer can resynchronise at the next one)."""
    with av.open(str(src)) as source, av.open(str(dst), "w", format="matroska",
                                               options={"cluster_time_limit": str(cluster_ms)}) as out:
        targets = {s.index: out.add_stream_from_template(s) for s in source.streams if s.type in ("video", "audio")}
        seen = 0
        for packet in source.demux():
            if not packet.size or packet.stream.index not in targets:
                continue
            if packet.stream.type == "video":
                seen += 1
                if seen > video_frames:
                    break
            packet.stream = targets[packet.stream.index]
            out.mux(packet)
    return dst


def overwrite(src: Path, dst: Path, fraction: float, size: int, seed: int) -> Path:
    """`size` random bytes written over `src` at `fraction` of its length (as make_media.py's
    corrupt_middle does at three places)."""
    raw = bytearray(src.read_bytes())
    start = int(len(raw) * fraction)
    raw[start:start + size] = np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8).tobytes()
    dst.write_bytes(bytes(raw))
    return dst
