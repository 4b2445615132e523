"""The engine stage: fixed-size batches in frame order, several batches in flight, detections filtered."""
from __future__ import annotations

import collections
import dataclasses

import numpy as np

from effdet_video.core.clock import StageClock
from effdet_video.core.frames import FrameRecord
from effdet_video.engine.base import Engine, PendingDetections
from effdet_video.engine.packing import BatchBuffer


@dataclasses.dataclass(frozen=True)
class DetectionFilter:
    """What a user keeps of the engine's detections: a score floor, a class subset, a per-frame cap."""

    score_threshold: float = 0.4
    class_ids: frozenset[int] | None = None
    max_det: int | None = None

    def apply(self, rows: np.ndarray) -> np.ndarray:
        """rows: float32 [n, 6] best first -> the kept rows, still best first."""
        keep = rows[:, 4] >= self.score_threshold
        if self.class_ids is not None:
            keep &= np.isin(rows[:, 5].astype(np.int64), list(self.class_ids))
        kept = rows[keep]
        return kept[: self.max_det] if self.max_det is not None else kept


class EngineBatcher:
    """Packs letterboxed frames into the engine's fixed batch (a partial last batch is padded) and keeps
    up to `in_flight` batches submitted, so that an asynchronous engine computes while the other stages
    work (0: collect each batch as soon as it is submitted, the lowest latency, for live sources). Frames
    must be added in index order; they come out in the same order."""

    def __init__(self, engine: Engine, detection_filter: DetectionFilter, clock: StageClock,
                 in_flight: int = 2) -> None:
        self.engine = engine
        self.filter = detection_filter
        self.clock = clock
        # An engine that runs several batches at once gets them (live's 0 stays 0: each frame alone).
        self.in_flight = max(in_flight, engine.parallel_batches) if in_flight > 0 else 0
        size = engine.batch_size
        height, width = engine.image_size
        self._buffer = BatchBuffer(size, height, width)
        self._batch: list[FrameRecord] = []
        self._pending: collections.deque[tuple[list[FrameRecord], PendingDetections]] = collections.deque()

    def add(self, record: FrameRecord) -> list[FrameRecord]:
        """Queue one prepared frame; returns the frames whose detections are now known."""
        self._buffer.put(len(self._batch), record.net_image, record.letterbox.resized_hw,
                         record.letterbox.image_scale)
        record.net_image = None
        self._batch.append(record)
        if len(self._batch) < self.engine.batch_size:
            return self._collect_finished()
        self._submit()
        return self._collect(keep=self.in_flight) + self._collect_finished()

    def flush(self) -> list[FrameRecord]:
        """Submit a partial batch and wait for everything in flight."""
        if self._batch:
            self._submit()
        return self._collect(keep=0)

    def _submit(self) -> None:
        count = len(self._batch)
        batch = self._buffer.batch(count)
        with self.clock.busy(items=count):
            self._pending.append((self._batch, self.engine.submit(batch)))
        self._batch = []

    def _collect_finished(self) -> list[FrameRecord]:
        """The batches in flight that the engine has already finished, oldest first: their frames go on
        at once rather than when `in_flight` later batches are behind them (at a stream's start, the
        first frames would otherwise wait for three batches to be decoded)."""
        finished = 0
        while finished < len(self._pending) and self._pending[finished][1].done():
            finished += 1
        return self._collect(keep=len(self._pending) - finished)

    def _collect(self, keep: int) -> list[FrameRecord]:
        done: list[FrameRecord] = []
        while len(self._pending) > keep:
            records, pending = self._pending.popleft()
            with self.clock.busy(items=0):
                result = pending.result()
            for i, record in enumerate(records):
                record.detections = self.filter.apply(record.letterbox.clip_to_frame(result.frame(i)))
            done.extend(records)
        return done
