"""A stage's clock: busy time and frames of one stage, summed over its worker threads. Here at the bottom
so that a stage (e.g. stages/infer.py) can charge its own time without importing the pipeline."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Iterator


@dataclasses.dataclass(frozen=True)
class StageStats:
    """busy_s: seconds the stage's threads spent working (summed over its `workers` threads);
    items: frames it handled; rate: frames per busy second of one worker times `workers` (what the
    stage could sustain on its own); utilisation: busy_s / (wall_s * workers), near 1 for the bottleneck."""

    name: str
    workers: int
    busy_s: float
    items: int
    rate: float
    utilisation: float


class StageClock:
    """Accumulates busy time and item counts of one stage from any number of worker threads."""

    def __init__(self, name: str, workers: int = 1) -> None:
        self.name = name
        self.workers = workers
        self._lock = threading.Lock()
        self._busy = 0.0
        self._items = 0

    def add(self, seconds: float, items: int = 1) -> None:
        with self._lock:
            self._busy += seconds
            self._items += items

    @contextlib.contextmanager
    def busy(self, items: int = 1) -> Iterator[None]:
        """Charge the time spent inside the block, and `items` frames, to this stage."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add(time.perf_counter() - start, items)

    def stats(self, wall_s: float) -> StageStats:
        with self._lock:
            busy, items = self._busy, self._items
        rate = items * self.workers / busy if busy > 0 else 0.0
        utilisation = busy / (wall_s * self.workers) if wall_s > 0 else 0.0
        return StageStats(self.name, self.workers, busy, items, rate, utilisation)
