"""The outcome of a run: frame counts, wall time and each stage's figures from its clock (core/clock.py),
so the bottleneck is visible at a glance."""
from __future__ import annotations

import dataclasses
from typing import Any

from effdet_video.core.clock import StageStats


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
