"""Timing of one engine: pipelined throughput and per-batch latency from host uint8 frames to host
detections, and the graph alone on device-resident inputs."""
from __future__ import annotations

import collections
import dataclasses
import time

import numpy as np

from effdet_video.bench.stats import summarize_latencies, time_calls
from effdet_video.engine.base import Engine, InferenceBatch
from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec


def random_batches(batch_size: int, image_size: tuple[int, int], count: int = 4,
                   seed: int = 0) -> list[InferenceBatch]:
    """Noise frames filling the whole network input (never zeros: they hide unwritten outputs)."""
    rng = np.random.default_rng(seed)
    height, width = image_size
    return [InferenceBatch(rng.integers(0, 256, (batch_size, height, width, 3), dtype=np.uint8),
                           np.tile(np.int32([height, width]), (batch_size, 1)),
                           np.full(batch_size, 2.0, np.float32), batch_size)
            for _ in range(count)]


def pipelined_throughput(engine: Engine, batches: list[InferenceBatch], seconds: float,
                         in_flight: int = 3) -> float:
    """Images per second with `in_flight` batches submitted ahead of the one being collected."""
    pending: collections.deque = collections.deque()
    done = 0
    engine.infer(batches[0])  # warm-up
    started = time.perf_counter()
    i = 0
    while time.perf_counter() - started < seconds or pending:
        if time.perf_counter() - started < seconds:
            pending.append(engine.submit(batches[i % len(batches)]))
            i += 1
        if len(pending) >= in_flight or time.perf_counter() - started >= seconds:
            done += pending.popleft().result().count
    return done / (time.perf_counter() - started)


def device_only_throughput(engine: Engine, seconds: float) -> float | None:
    """Images per second of the captured graph alone (CUDA engines only)."""
    import torch

    if not hasattr(engine, "run_on_device"):
        return None
    for _ in range(3):
        engine.run_on_device()
    torch.cuda.synchronize()
    runs, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        for _ in range(5):
            engine.run_on_device()
        torch.cuda.synchronize()
        runs += 5
    return runs * engine.batch_size / (time.perf_counter() - started)


def bench_engine(spec: EngineSpec, seconds: float = 3.0, latency_iterations: int = 200) -> dict:
    """One result row of `bench`: build facts, throughput and latency of `spec`."""
    started = time.perf_counter()
    try:
        engine = build_engine(spec)
    except Exception as error:  # noqa: BLE001 - one failed configuration must not lose the others
        return {"spec": dataclasses.asdict(spec), "error": f"{type(error).__name__}: {error}"[:500]}
    engine.settle()
    row = {"spec": {k: v for k, v in dataclasses.asdict(spec).items() if v is not None},
           "engine": type(engine).__name__, "build_s": round(time.perf_counter() - started, 3),
           "build": getattr(engine, "build_info", {})}
    with engine:
        row["device_only_img_s"] = _round(device_only_throughput(engine, seconds))
        if spec.nms_mode != "none":
            batches = random_batches(spec.batch_size, engine.image_size)
            row["img_s"] = _round(pipelined_throughput(engine, batches, seconds))
            row["latency"] = summarize_latencies(
                time_calls(lambda: engine.infer(batches[0]), latency_iterations, seconds))
    return row


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)
