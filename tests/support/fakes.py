"""A fake Engine for pipeline tests: deterministic detections derived from the frame index, optionally
slow or failing, and checks of the engine contract (fixed batch shape, in-order submission); and the
CLI run in-process (`run_cli`, with conftest's `engines` fixture in place of the real engines)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from effdet_video import cli
from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections, ReadyDetections


class EngineFailure(RuntimeError):
    """Carries `at`, the time.monotonic() when it was raised, so tests can time the stop."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.at = time.monotonic()


def fake_detections(index: int) -> np.ndarray:
    """Rows of frame `index`, inside any frame of at least 48x40 pixels: a person box that moves with
    the index (score 0.9), a car (score 0.6) and a dog below the default threshold 0.4 (score 0.3)."""
    x0, y0 = float(index % 20), float(2 * (index % 10))
    return np.array([
        [x0, y0, x0 + 16, y0 + 12, 0.9, 1],
        [30, 20, 46, 38, 0.6, 3],
        [2, 2, 10, 10, 0.3, 18],
    ], dtype=np.float32)


class FakeEngine(Engine):
    """Frames are numbered in submission order, which the pipeline promises is frame order.

    delay_s: sleep per batch (inside `result`, like an asynchronous engine); fail_on_batch: raise
    EngineFailure when that batch (0-based) is submitted."""

    def __init__(self, batch_size: int = 4, image_size: tuple[int, int] = (64, 64), max_det: int = 10,
                 delay_s: float = 0.0, fail_on_batch: int | None = None) -> None:
        self.batch_size = batch_size
        self.image_size = image_size
        self.max_det = max_det
        self.device = "fake"
        self.delay_s = delay_s
        self.fail_on_batch = fail_on_batch
        self.batches = 0
        self.frames = 0
        self.counts: list[int] = []
        self.closed = False
        self._lock = threading.Lock()

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        expected = (self.batch_size, *self.image_size, 3)
        if batch.images.shape != expected or batch.images.dtype != np.uint8:
            raise AssertionError(f"batch images {batch.images.dtype} {batch.images.shape}, expected {expected}")
        with self._lock:
            if self.fail_on_batch is not None and self.batches == self.fail_on_batch:
                raise EngineFailure(f"engine failed on batch {self.batches}")
            first = self.frames
            self.batches += 1
            self.frames += batch.count
            self.counts.append(batch.count)
        detections = np.zeros((self.batch_size, self.max_det, 6), dtype=np.float32)
        num_valid = np.zeros(self.batch_size, dtype=np.int32)
        for row in range(batch.count):
            rows = fake_detections(first + row)[: self.max_det]
            detections[row, : len(rows)] = rows
            num_valid[row] = len(rows)
        result = DetectionBatch(detections, num_valid, batch.count)
        return _Delayed(result, self.delay_s) if self.delay_s else ReadyDetections(result)

    def close(self) -> None:
        self.closed = True


class PacedEngine(Engine):
    """A real engine that takes at least `seconds` per batch: a live test's drop rate then follows this
    pace, not how busy the machine happens to be (as long as the engine itself is faster)."""

    def __init__(self, engine: Engine, seconds: float) -> None:
        self.engine, self.seconds = engine, seconds
        self.batch_size, self.image_size = engine.batch_size, engine.image_size
        self.max_det, self.device = engine.max_det, engine.device

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        started = time.monotonic()
        result = self.engine.infer(batch)
        time.sleep(max(0.0, started + self.seconds - time.monotonic()))
        return ReadyDetections(result)

    def close(self) -> None:
        self.engine.close()


class _Delayed(PendingDetections):
    def __init__(self, batch: DetectionBatch, delay_s: float) -> None:
        self._batch = batch
        self._ready_at = time.monotonic() + delay_s

    def result(self) -> DetectionBatch:
        time.sleep(max(0.0, self._ready_at - time.monotonic()))
        return self._batch

    def done(self) -> bool:
        return time.monotonic() >= self._ready_at


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> tuple[int, str]:
    """The CLI's exit code and stderr for `args`."""
    with pytest.raises(SystemExit) as finished:
        cli.main([str(a) for a in args])
    return finished.value.code, capsys.readouterr().err
