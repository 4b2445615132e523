"""Optional NVDEC decoding for batch mode (`--decoder nvdec`): the GPU's hardware video decoder, through
NVIDIA's PyNvVideoCodec, turns packets into RGB frames, so the CPU cores that many concurrent streams
share are left for letterboxing and the sinks.

PyAV still opens the file - it validates it, gives the VideoInfo the sinks need and the timestamps
(demuxing is cheap; decoding is what NVDEC takes over). PyNvVideoCodec is an optional dependency.
"""
from __future__ import annotations

import itertools
import threading
from pathlib import Path
from types import ModuleType
from typing import Iterator, Sequence

import av
import numpy as np

from effdet_video.errors import UserError
from effdet_video.pipeline.frames import FrameRecord
from effdet_video.stages.base import FrameSource
from effdet_video.stages.source import VideoFileSource, open_container

PREFETCH = 16  # frames the decoder's own thread keeps ready


def require_nvdec() -> ModuleType:
    try:
        import PyNvVideoCodec
    except ImportError as error:
        raise UserError("--decoder nvdec needs NVIDIA's PyNvVideoCodec and an NVIDIA GPU "
                        f"(pip install PyNvVideoCodec); it could not be imported: {error}") from None
    return PyNvVideoCodec


class RgbPicture:
    """Stands in for PyAV's VideoFrame in `FrameRecord.picture`: the prepare stage asks it for rgb24."""

    def __init__(self, rgb: np.ndarray) -> None:
        self._rgb = rgb

    def to_ndarray(self, format: str) -> np.ndarray:  # noqa: A002 - PyAV's parameter name
        if format != "rgb24":
            raise ValueError(f"an NVDEC frame is RGB; asked for {format}")
        return self._rgb


def presentation_timestamps(path: Path) -> list[int]:
    """The video packets' pts in presentation order (the order decoders return frames in)."""
    with open_container(path) as container:
        stream = container.streams.video[0]
        try:
            return sorted(packet.pts for packet in container.demux(stream) if packet.pts is not None and packet.size)
        except av.error.InvalidDataError:
            return []  # a damaged container: frames get synthetic timestamps


class NvdecFileSource(FrameSource):
    """The first video stream of a file, decoded on GPU `gpu_id`."""

    def __init__(self, path: Path, gpu_id: int = 0) -> None:
        nvc = require_nvdec()
        probe = VideoFileSource(path)  # unreadable files fail here, with the same message as on the CPU
        self.info = probe.info
        self.expected_frames = probe.expected_frames
        probe.close()
        self._pts = presentation_timestamps(path)
        self._decoder = nvc.ThreadedDecoder(str(path), PREFETCH, gpu_id=gpu_id, use_device_memory=True,
                                            output_color_type=nvc.OutputColorType.RGB)

    def frames(self) -> Iterator[FrameRecord]:
        import torch

        info = self.info
        step = max(1, round(1 / (info.rate * info.time_base))) if info.rate else 1
        index, next_pts = 0, 0
        while decoded := self._decoder.get_batch_frames(PREFETCH):
            for frame in decoded:
                rgb = torch.from_dlpack(frame).cpu().numpy()  # [H, W, 3] uint8, copied off the decoder's buffer
                pts = self._pts[index] if index < len(self._pts) else next_pts
                next_pts = pts + step
                yield FrameRecord(index=index, pts=pts, time_base=info.time_base, rotation=info.rotation,
                                  picture=RgbPicture(rgb))
                index += 1

    def close(self) -> None:
        self._decoder.end()


def nvdec_opener(devices: Sequence[str]) -> "NvdecOpener":
    """A source opener that spreads the inputs over the GPUs of `devices` (cuda:N), round robin."""
    require_nvdec()
    gpu_ids = [int(device.split(":")[1]) if ":" in device else 0 for device in devices if device.startswith("cuda")]
    if not gpu_ids:
        raise UserError("--decoder nvdec decodes on NVIDIA GPUs; the engine devices have none")
    return NvdecOpener(gpu_ids)


class NvdecOpener:
    def __init__(self, gpu_ids: list[int]) -> None:
        self._gpu_ids = itertools.cycle(gpu_ids)
        self._lock = threading.Lock()

    def __call__(self, path: Path) -> NvdecFileSource:
        with self._lock:
            gpu_id = next(self._gpu_ids)
        return NvdecFileSource(path, gpu_id)
