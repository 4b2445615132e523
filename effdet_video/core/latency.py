"""Per-frame latency of a live run (capture -> annotated frame out): percentiles, recent rate, and drift.

Drift is what separates a bounded pipeline from one that falls further behind: the least-squares slope of
latency against capture time (ms per minute), and the median of the first versus the last window.
"""
from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

DRIFT_WINDOW_S = 60.0


def _percentiles_ms(latencies_s: np.ndarray) -> dict[str, float | None]:
    if latencies_s.size == 0:
        return {"p50_ms": None, "p99_ms": None, "max_ms": None, "mean_ms": None}
    p50, p99 = np.percentile(latencies_s, [50, 99]) * 1000
    return {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2),
            "max_ms": round(float(latencies_s.max() * 1000), 2), "mean_ms": round(float(latencies_s.mean() * 1000), 2)}


class LatencyRecorder:
    """Thread-safe record of (capture time, latency) per frame out; times are time.monotonic seconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._captured: list[float] = []
        self._latency: list[float] = []
        self.started = time.monotonic()

    def restart(self) -> None:
        """Start the clock for the frame rate (the run's start, after the engine is built)."""
        self.started = time.monotonic()

    def add(self, captured: float, done: float) -> None:
        with self._lock:
            self._captured.append(captured)
            self._latency.append(done - captured)

    def _arrays(self) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return np.asarray(self._captured), np.asarray(self._latency)

    def recent(self, window_s: float = 5.0) -> dict[str, Any]:
        """Figures over the last `window_s` seconds, for the preview page."""
        captured, latency = self._arrays()
        now = time.monotonic()
        recent = captured >= now - window_s
        span = min(window_s, now - self.started)
        return {"frames": int(captured.size), "fps": round(int(recent.sum()) / span, 2) if span > 0 else 0.0,
                "window_s": window_s, **_percentiles_ms(latency[recent])}

    def summary(self) -> dict[str, Any]:
        """Figures over the whole run, with drift: slope (ms/min) and first- vs last-window medians, the
        window being a minute, or a fifth of the run when it is shorter than five minutes."""
        captured, latency = self._arrays()
        elapsed = time.monotonic() - self.started
        result: dict[str, Any] = {"frames": int(captured.size), "seconds": round(elapsed, 3),
                                  "fps": round(captured.size / elapsed, 2) if elapsed > 0 else 0.0,
                                  **_percentiles_ms(latency)}
        if captured.size >= 10:
            minutes = (captured - captured[0]) / 60.0
            slope = np.polyfit(minutes, latency * 1000, 1)[0] if minutes[-1] > 0 else 0.0
            window = min(DRIFT_WINDOW_S, (captured[-1] - captured[0]) / 5)
            first = latency[captured <= captured[0] + window]
            last = latency[captured >= captured[-1] - window]
            result["drift"] = {"slope_ms_per_min": round(float(slope), 3), "window_s": round(float(window), 3),
                               "first_p50_ms": round(float(np.median(first) * 1000), 2),
                               "last_p50_ms": round(float(np.median(last) * 1000), 2)}
        return result
