"""`BatchUnit`: what one process needs to process batch inputs (options with the engine spec and the
encoder, devices, decoder), as plain picklable settings, so that the same unit runs in the batch command's own process, in a
worker process of `batch --processes` and in a Ray actor, each building its own engines from it.

Opened, a unit has one engine per device; its inputs share them through a SharedEngine (cross-stream
batching), except a lone stream on one device, which uses its engine directly (exactly a single `run`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any, Callable, Iterator, Sequence

from effdet_video.engine.base import Engine
from effdet_video.engine.shared import SharedEngine
from effdet_video.engine.spec import EngineSpec
from effdet_video.pipeline.batch_runner import BatchOptions, EngineProvider, SourceOpener
from effdet_video.sources.hw_decode import gpu_ids
from effdet_video.sources.source import VideoOpener


def build_engines(spec: EngineSpec, devices: Sequence[str]) -> list[Engine]:
    """One engine per device, closing those already built if one fails."""
    from effdet_video.engine import factory  # torch is imported only when an engine is needed

    engines: list[Engine] = []
    try:
        for device in devices:
            engines.append(factory.build_engine(dataclasses.replace(spec, device=device)))
    except BaseException:
        for engine in engines:
            engine.close()
        raise
    return engines


def thread_locks_for_progress_bars() -> None:
    """tqdm guards its bars with a multiprocessing semaphore, made with the first bar (even a disabled
    one); a worker process or actor that is killed would leave it to the resource tracker to clean up,
    with a warning. One process's bars need only a thread lock."""
    import threading

    from tqdm import tqdm

    tqdm.set_lock(threading.RLock())


@dataclasses.dataclass(frozen=True)
class OpenUnit:
    """A unit with its engines built: per-stream engines, the source opener, and the engines' statistics."""

    engine_for_stream: EngineProvider
    open_source: SourceOpener
    engine_stats: Callable[[], list[dict[str, Any]]]
    build_s: float


@dataclasses.dataclass(frozen=True)
class BatchUnit:
    """decoder: 'cpu' or 'auto'/'nvdec' (checked by the caller; NVDEC decodes on the unit's own GPUs);
    frames_on_gpu: NVDEC frames stay in GPU memory (detections only); cpu_threads: torch's intra-op
    threads for CPU engines, when several processes share the cores (None: the engine's default)."""

    options: BatchOptions
    devices: tuple[str, ...]
    decoder: str = "cpu"
    frames_on_gpu: bool = False
    stream_batch: int = 8
    linger_s: float = 0.004
    cpu_threads: int | None = None

    def on_devices(self, devices: Sequence[str]) -> "BatchUnit":
        return dataclasses.replace(self, devices=tuple(devices))

    def source_opener(self) -> VideoOpener:
        ids = gpu_ids(self.devices)
        if self.decoder == "cpu" or not ids:
            return VideoOpener("cpu")
        return VideoOpener(self.decoder, ids, frames_on_gpu=self.frames_on_gpu)

    @contextlib.contextmanager
    def open(self) -> Iterator[OpenUnit]:
        """Build the engines (closed again on leaving)."""
        started = time.perf_counter()
        engines = build_engines(self.options.engine, self.devices)
        build_s = round(time.perf_counter() - started, 3)
        if self.cpu_threads and "cpu" in self.devices:
            import torch

            torch.set_num_threads(self.cpu_threads)
        if self.options.jobs == 1 and len(engines) == 1:
            with engines[0] as engine:
                yield OpenUnit(lambda: engine, self.source_opener(), lambda: [], build_s)
            return
        stream_batch = min(self.stream_batch, engines[0].batch_size)
        with SharedEngine(engines, linger_s=self.linger_s) as shared:
            yield OpenUnit(lambda: shared.stream_engine(stream_batch), self.source_opener(),
                           lambda: [stats.as_dict() for stats in shared.stats()], build_s)
