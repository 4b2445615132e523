"""Per-stage timing of a run: how busy each stage was, so the bottleneck is visible at a glance."""
from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from typing import Any, Iterator


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


@dataclasses.dataclass(frozen=True)
class RunStats:
    """The outcome of one `run_pipeline` call.

    frames: frames written to the sinks; decoded: frames decoded (equal unless the run stopped early);
    skipped_packets: corrupt packets skipped by the decoder; dropped: frames a live source dropped;
    wall_s: seconds from start to the last sink finishing; fps: frames / wall_s."""

    frames: int
    decoded: int
    skipped_packets: int
    dropped: int
    wall_s: float
    fps: float
    stages: tuple[StageStats, ...]

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def summary(self) -> str:
        """A small table for stderr: one line per stage, then the end-to-end figure."""
        lines = [f"{'stage':<10}{'workers':>8}{'busy s':>9}{'frames':>8}{'frames/s':>10}{'of wall':>9}"]
        for s in self.stages:
            lines.append(f"{s.name:<10}{s.workers:>8}{s.busy_s:>9.2f}{s.items:>8}{s.rate:>10.1f}"
                         f"{s.utilisation:>9.0%}")
        lines.append(f"{'total':<10}{'':>8}{self.wall_s:>9.2f}{self.frames:>8}{self.fps:>10.1f}")
        return "\n".join(lines)


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
