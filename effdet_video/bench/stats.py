"""Small timing helpers shared by the benchmarks."""
from __future__ import annotations

import time
from typing import Callable

import numpy as np


def summarize_latencies(seconds: list[float]) -> dict[str, float]:
    """p50/p99/mean in milliseconds."""
    ms = np.asarray(seconds) * 1e3
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p99_ms": round(float(np.percentile(ms, 99)), 3),
            "mean_ms": round(float(ms.mean()), 3)}


def time_calls(call: Callable[[], object], iterations: int, seconds: float = float("inf"),
               warmup: int = 3) -> list[float]:
    """Wall time of each call of `call` (which must block until its work is done): `iterations` calls,
    fewer if `seconds` run out first (at least 5)."""
    for _ in range(warmup):
        call()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while len(times) < iterations and (len(times) < 5 or time.perf_counter() < deadline):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if not numerator or not denominator:
        return None
    return round(numerator / denominator, 3)
