"""Cross-stream batching: many streams share one engine per device, the way a stream muxer feeds one
accelerator from many cameras.

Each stream keeps its own pipeline and talks to a `StreamEngine` (the Engine contract, a small batch):
its `submit` copies the batch's valid rows into a request and returns at once. One dispatcher thread per
real engine packs the rows of many requests into full engine batches - waiting at most `linger_s` for
more rows when a batch is not full, so latency stays bounded - runs them with up to `in_flight` batches
outstanding, and copies every request's own rows back. With several devices all dispatchers pull from
one request queue, so whichever device is free takes the next rows (load balancing without a scheduler).

The request queue needs no bound of its own: a stream has at most its pipeline's `in_flight` + 1
requests outstanding, so memory is bounded by the number of streams.
"""
from __future__ import annotations

import collections
import dataclasses
import queue
import threading
import time
from typing import Callable, Sequence

import numpy as np

from effdet_video.core.control import POLL_S
from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections, ReadyDetections
from effdet_video.engine.packing import BatchBuffer


class SharedEngineError(RuntimeError):
    """The batch holding some of a stream's rows failed in the engine, or the shared engine closed."""


class _Request:
    """The valid rows of one stream batch, and their detections once every row has been run."""

    def __init__(self, batch: InferenceBatch, max_det: int) -> None:
        count = batch.count
        self.count = count
        self.images = np.array(batch.images[:count])  # a copy: the stream may reuse its arrays
        self.valid_hw = np.array(batch.valid_hw[:count], dtype=np.int32)
        self.scales = np.array(batch.image_scales[:count], dtype=np.float32)
        self.detections = np.zeros((count, max_det, 6), dtype=np.float32)
        self.num_valid = np.zeros(count, dtype=np.int32)
        self.error: BaseException | None = None
        self.done = threading.Event()
        self._remaining = count
        self._lock = threading.Lock()

    def resolve(self, start: int, result: DetectionBatch, row: int, rows: int) -> None:
        """Rows [start, start+rows) of this request are rows [row, row+rows) of an engine result."""
        self.detections[start:start + rows] = result.detections[row:row + rows]
        self.num_valid[start:start + rows] = result.num_valid[row:row + rows]
        with self._lock:
            self._remaining -= rows
            if self._remaining == 0:
                self.done.set()

    def fail(self, error: BaseException) -> None:
        with self._lock:
            if self.error is None:
                self.error = error
        self.done.set()


@dataclasses.dataclass
class _Slice:
    """Rows [start, start+rows) of `request`, placed at rows [row, row+rows) of an engine batch."""

    request: _Request
    start: int
    row: int
    rows: int


class _PendingRows(PendingDetections):
    def __init__(self, request: _Request, batch_size: int) -> None:
        self._request = request
        self._batch_size = batch_size

    def result(self) -> DetectionBatch:
        request = self._request
        request.done.wait()
        if request.error is not None:
            raise SharedEngineError(f"shared engine: {request.error}") from request.error
        detections = np.zeros((self._batch_size, *request.detections.shape[1:]), dtype=np.float32)
        num_valid = np.zeros(self._batch_size, dtype=np.int32)
        detections[:request.count] = request.detections
        num_valid[:request.count] = request.num_valid
        return DetectionBatch(detections, num_valid, request.count)


@dataclasses.dataclass
class DeviceStats:
    """What one real engine ran: batches, frames, and frames / (batches x batch size)."""

    device: str
    batch_size: int
    batches: int = 0
    frames: int = 0
    failed_batches: int = 0

    @property
    def fill(self) -> float:
        return self.frames / (self.batches * self.batch_size) if self.batches else 0.0

    def as_dict(self) -> dict:
        return {**dataclasses.asdict(self), "fill": round(self.fill, 4)}


class _Dispatcher:
    """The thread that feeds one real engine from the shared request queue."""

    def __init__(self, engine: Engine, requests: queue.Queue, closed: threading.Event, linger_s: float,
                 in_flight: int, on_crash: Callable[[], None]) -> None:
        self.engine = engine
        self.error: BaseException | None = None
        self._on_crash = on_crash
        self.stats = DeviceStats(str(engine.device), engine.batch_size)
        self._requests = requests
        self._linger_s = linger_s
        self._in_flight = max(1, in_flight, engine.parallel_batches)
        height, width = engine.image_size
        size = engine.batch_size
        self._buffer = BatchBuffer(size, height, width)
        self._pending: collections.deque[tuple[list[_Slice], PendingDetections]] = collections.deque()
        self._carry: _Slice | None = None  # rows of a request that did not fit in the last batch
        self._closed = closed  # set once no more requests can arrive
        self.thread = threading.Thread(target=self._run, name=f"effdet-dispatch-{engine.device}", daemon=True)

    def _run(self) -> None:
        try:
            self._serve()
        except BaseException as error:  # noqa: BLE001 - streams waiting on this thread must not hang
            self.error = error
            held = [piece for slices, _ in self._pending for piece in slices]
            for piece in held + ([self._carry] if self._carry else []):
                piece.request.fail(error)
            self._on_crash()

    def _serve(self) -> None:
        _bind_device(self.engine.device)
        while True:
            slices = self._gather()
            if not slices:
                break
            self._submit(slices)
            while len(self._pending) > self._in_flight:
                self._resolve_oldest()
        while self._pending:
            self._resolve_oldest()

    def _next_request(self, timeout: float) -> _Request | None:
        """The next request, or None when none came within `timeout` (0: do not wait)."""
        try:
            return self._requests.get(timeout=timeout) if timeout > 0 else self._requests.get_nowait()
        except queue.Empty:
            return None

    def _gather(self) -> list[_Slice]:
        """Rows for one engine batch: waits for the first, then lingers up to `linger_s` for more until the
        batch is full. While no rows are waiting, results in flight are handed back (their streams may
        need them before submitting more rows). Empty once the engine is closed and the queue drained."""
        size = self.engine.batch_size
        slices: list[_Slice] = []
        fill = 0
        deadline = 0.0
        while fill < size:
            if self._carry is None:
                if fill == 0:
                    timeout = 0.0 if self._pending else POLL_S
                else:
                    timeout = max(0.0, deadline - time.monotonic())
                request = self._next_request(timeout)
                if request is None:
                    if self._pending and (fill == 0 or time.monotonic() < deadline):
                        self._resolve_oldest()
                        continue
                    if fill == 0 and not self._closed.is_set():
                        continue
                    break
                self._carry = _Slice(request, 0, 0, request.count)
            piece = self._carry
            rows = min(piece.rows, size - fill)
            slices.append(_Slice(piece.request, piece.start, fill, rows))
            self._carry = _Slice(piece.request, piece.start + rows, 0, piece.rows - rows) if rows < piece.rows else None
            if fill == 0:
                deadline = time.monotonic() + self._linger_s
            fill += rows
        return slices

    def _submit(self, slices: list[_Slice]) -> None:
        try:
            count = 0
            for piece in slices:
                rows = slice(piece.start, piece.start + piece.rows)
                request = piece.request
                self._buffer.put(slice(piece.row, piece.row + piece.rows), request.images[rows],
                                 request.valid_hw[rows], request.scales[rows])
                count += piece.rows
            pending = self.engine.submit(self._buffer.batch(count))
        except Exception as error:  # noqa: BLE001 - fails the streams of this batch, not the dispatcher
            self._fail(slices, error)
            return
        self.stats.batches += 1
        self.stats.frames += count
        self._pending.append((slices, pending))

    def _resolve_oldest(self) -> None:
        slices, pending = self._pending.popleft()
        try:
            result = pending.result()
            for piece in slices:
                piece.request.resolve(piece.start, result, piece.row, piece.rows)
        except Exception as error:  # noqa: BLE001 - as in _submit
            self._fail(slices, error)

    def _fail(self, slices: list[_Slice], error: BaseException) -> None:
        self.stats.failed_batches += 1
        for piece in slices:
            piece.request.fail(error)


def _bind_device(device: str) -> None:
    """CUDA's current device is per thread: make the dispatcher's the one its engine lives on ('cuda'
    without an index is the default device, which a new thread has already)."""
    if device.startswith("cuda:"):
        import torch

        torch.cuda.set_device(int(device.split(":")[1]))


class SharedEngine:
    """Owns one real engine per device (all of the same image size and max_det) and their dispatchers;
    hands out per-stream `StreamEngine`s. Closing it closes the real engines."""

    def __init__(self, engines: Sequence[Engine], linger_s: float = 0.004, in_flight: int = 2) -> None:
        if not engines:
            raise ValueError("a shared engine needs at least one engine")
        shapes = {(tuple(e.image_size), e.max_det) for e in engines}
        if len(shapes) > 1:
            raise ValueError(f"engines disagree on image size / max_det: {sorted(shapes)}")
        self.engines = list(engines)
        self.image_size = tuple(engines[0].image_size)
        self.max_det = engines[0].max_det
        self._requests: queue.Queue = queue.Queue()
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._broken: BaseException | None = None  # set when every dispatcher has died
        self._dispatchers = [_Dispatcher(engine, self._requests, self._closed, linger_s, in_flight,
                                         self._dispatcher_crashed) for engine in engines]
        for dispatcher in self._dispatchers:
            dispatcher.thread.start()

    @property
    def devices(self) -> list[str]:
        return [str(engine.device) for engine in self.engines]

    def stream_engine(self, batch_size: int) -> "StreamEngine":
        return StreamEngine(self, batch_size)

    def enqueue(self, batch: InferenceBatch, batch_size: int) -> PendingDetections:
        if batch.count == 0:
            return ReadyDetections(DetectionBatch(np.zeros((batch_size, self.max_det, 6), np.float32),
                                                  np.zeros(batch_size, np.int32), 0))
        request = _Request(batch, self.max_det)
        with self._lock:
            if self._broken is not None:
                raise SharedEngineError(f"shared engine failed: {self._broken}") from self._broken
            if self._closed.is_set():
                raise SharedEngineError("shared engine is closed")
            self._requests.put(request)
        return _PendingRows(request, batch_size)

    def _dispatcher_crashed(self) -> None:
        """When the last dispatcher has died, nothing will run the queued rows: fail them, and refuse more."""
        with self._lock:
            errors = [d.error for d in self._dispatchers]
            if any(error is None for error in errors):
                return
            self._broken = errors[0]
            while True:
                try:
                    self._requests.get_nowait().fail(self._broken)
                except queue.Empty:
                    return

    def stats(self) -> list[DeviceStats]:
        return [dispatcher.stats for dispatcher in self._dispatchers]

    def close(self) -> None:
        """Run what is queued, stop the dispatchers, close the engines."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        for dispatcher in self._dispatchers:
            dispatcher.thread.join()
        for engine in self.engines:
            engine.close()

    def __enter__(self) -> "SharedEngine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StreamEngine(Engine):
    """One stream's view of a SharedEngine: the Engine contract with its own (small) batch size, so the
    stream's pipeline is unchanged. Safe to use from one thread per stream; closing it is a no-op (the
    SharedEngine owns the real engines)."""

    def __init__(self, shared: SharedEngine, batch_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"stream batch size must be at least 1, got {batch_size}")
        self._shared = shared
        self.batch_size = batch_size
        self.image_size = shared.image_size
        self.max_det = shared.max_det
        self.device = "shared:" + ",".join(shared.devices)

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        return self._shared.enqueue(batch, self.batch_size)
