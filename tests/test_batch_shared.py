"""Cross-stream batching (engine/shared.py): rows of several streams share engine batches, and every frame
gets its own detections back, across split requests, several devices and engine failures."""
from __future__ import annotations

import collections
import threading
import time

import numpy as np
import pytest

from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections, ReadyDetections
from effdet_video.engine.shared import SharedEngine, SharedEngineError

SIZE = (8, 8)


class RecordingEngine(Engine):
    """Reads (stream, frame) from pixel [0, 0, :2] of each valid row, records it per batch, and answers
    with one detection per frame that carries the same identity: x0 = stream, y0 = frame."""

    def __init__(self, batch_size: int, device: str = "fake", delay_s: float = 0.0,
                 fail_on_batch: int | None = None) -> None:
        self.batch_size, self.image_size, self.max_det, self.device = batch_size, SIZE, 3, device
        self.delay_s = delay_s
        self.fail_on_batch = fail_on_batch
        self.batches: list[list[tuple[int, int]]] = []
        self.closed = False

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        assert batch.images.shape == (self.batch_size, *SIZE, 3)
        if self.fail_on_batch == len(self.batches):
            self.batches.append([])
            raise RuntimeError("device lost")
        identities = [(int(batch.images[i, 0, 0, 0]), int(batch.images[i, 0, 0, 1])) for i in range(batch.count)]
        self.batches.append(identities)
        detections = np.zeros((self.batch_size, self.max_det, 6), np.float32)
        for i, (stream, frame) in enumerate(identities):
            detections[i, 0] = (stream, frame, stream + 1, frame + 1, 0.9, 1)
        time.sleep(self.delay_s)
        return ReadyDetections(DetectionBatch(detections, (np.arange(self.batch_size) < batch.count).astype(np.int32),
                                              batch.count))

    def close(self) -> None:
        self.closed = True


def stream_batches(stream: int, frames: int, batch_size: int) -> list[InferenceBatch]:
    """A stream's frames in batches of `batch_size` (the last one partial), identity in pixel [0, 0]."""
    batches = []
    for first in range(0, frames, batch_size):
        count = min(batch_size, frames - first)
        images = np.zeros((batch_size, *SIZE, 3), np.uint8)
        images[:count, 0, 0, 0] = stream
        images[:count, 0, 0, 1] = np.arange(first, first + count)
        batches.append(InferenceBatch(images, np.full((batch_size, 2), 8, np.int32), np.ones(batch_size, np.float32),
                                      count))
    return batches


def run_streams(shared: SharedEngine, streams: dict[int, tuple[int, int]], in_flight: int = 2) -> dict[int, list]:
    """Each stream {id: (frames, batch size)} on its own thread, like the pipeline's EngineBatcher: up to
    `in_flight` batches outstanding. Returns per stream the first detection row of every frame, or the
    exception of each failed batch."""
    results: dict[int, list] = {}

    def run(stream: int, frames: int, batch_size: int) -> None:
        engine = shared.stream_engine(batch_size)
        outstanding: collections.deque = collections.deque()
        rows: list = []

        def collect() -> None:
            try:
                result = outstanding.popleft().result()
            except SharedEngineError as error:
                rows.append(error)
                return
            assert result.detections.shape == (batch_size, 3, 6)
            rows.extend(result.frame(i)[0].tolist() for i in range(result.count))

        for batch in stream_batches(stream, frames, batch_size):
            outstanding.append(engine.submit(batch))
            batch.images[:] = 255  # the stream reuses its arrays at once: the shared engine copied them
            while len(outstanding) > in_flight:
                collect()
        while outstanding:
            collect()
        results[stream] = rows

    threads = [threading.Thread(target=run, args=(s, *spec)) for s, spec in streams.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def expected_rows(stream: int, frames: int) -> list[list[float]]:
    return [[stream, f, stream + 1, f + 1, pytest.approx(0.9), 1] for f in range(frames)]


def test_rows_of_three_streams_share_batches_and_come_back_to_their_frames() -> None:
    engine = RecordingEngine(batch_size=8)
    streams = {1: (10, 4), 2: (7, 3), 3: (12, 5)}  # batch sizes that do not divide 8: requests get split
    with SharedEngine([engine], linger_s=0.2) as shared:
        results = run_streams(shared, streams)
    for stream, (frames, _) in streams.items():
        assert results[stream] == expected_rows(stream, frames)
    assert sum(len(batch) for batch in engine.batches) == 29
    mixed = [batch for batch in engine.batches if len({stream for stream, _ in batch}) > 1]
    assert mixed, engine.batches
    assert all(len(batch) <= 8 for batch in engine.batches)
    assert engine.closed
    stats = shared.stats()[0]
    assert (stats.batches, stats.frames) == (len(engine.batches), 29)


def test_a_lone_partial_batch_runs_after_the_linger_time() -> None:
    engine = RecordingEngine(batch_size=64)
    with SharedEngine([engine], linger_s=0.01) as shared:
        started = time.monotonic()
        result = shared.stream_engine(4).infer(stream_batches(5, 3, 4)[0])
        elapsed = time.monotonic() - started
    assert result.count == 3 and result.num_valid.tolist() == [1, 1, 1, 0]
    assert engine.batches == [[(5, 0), (5, 1), (5, 2)]]
    assert elapsed < 0.5


def test_two_devices_share_the_streams_and_each_frame_gets_its_own_rows() -> None:
    engines = [RecordingEngine(batch_size=8, device="gpu:0", delay_s=0.01),
               RecordingEngine(batch_size=8, device="gpu:1", delay_s=0.01)]
    streams = {s: (40, 8) for s in range(1, 5)}
    with SharedEngine(engines, linger_s=0.002) as shared:
        results = run_streams(shared, streams)
        assert [s.device for s in shared.stats()] == ["gpu:0", "gpu:1"]
    for stream, (frames, _) in streams.items():
        assert results[stream] == expected_rows(stream, frames)
    assert all(engine.batches for engine in engines)
    assert sum(len(b) for engine in engines for b in engine.batches) == 160


def test_a_failed_engine_batch_fails_only_the_frames_in_it() -> None:
    engine = RecordingEngine(batch_size=4, fail_on_batch=0)
    with SharedEngine([engine], linger_s=0.001) as shared:
        results = run_streams(shared, {1: (8, 4)}, in_flight=0)
    first, *rest = results[1]
    assert isinstance(first, SharedEngineError) and "device lost" in str(first)
    assert rest == expected_rows(1, 8)[4:]
    assert shared.stats()[0].failed_batches == 1


def test_an_engine_breaking_the_contract_fails_the_batch_instead_of_hanging_it() -> None:
    engine = RecordingEngine(batch_size=4)
    with SharedEngine([engine], linger_s=0.001) as shared:
        engine.max_det = 5  # its results now have 5 rows a frame, not the 3 it promised
        results = run_streams(shared, {1: (4, 4)})
    assert len(results[1]) == 1 and "broadcast" in str(results[1][0])


def test_rows_of_the_wrong_size_fail_their_own_stream_only() -> None:
    engine = RecordingEngine(batch_size=4)
    with SharedEngine([engine], linger_s=0.001) as shared:
        wrong = InferenceBatch(np.zeros((2, 16, 16, 3), np.uint8), np.zeros((2, 2), np.int32),
                               np.ones(2, np.float32), 2)
        with pytest.raises(SharedEngineError, match="broadcast"):
            shared.stream_engine(2).infer(wrong)
        results = run_streams(shared, {1: (6, 2)})
    assert results[1] == expected_rows(1, 6)


def test_when_the_last_dispatcher_dies_submits_fail_at_once() -> None:
    with SharedEngine([RecordingEngine(batch_size=4, device="cuda:99")]) as shared:  # cannot bind to it
        shared._dispatchers[0].thread.join(timeout=5)
        with pytest.raises(SharedEngineError, match="shared engine failed"):
            shared.stream_engine(4).submit(stream_batches(1, 4, 4)[0])


def test_submitting_after_close_is_an_error_and_engines_must_agree() -> None:
    shared = SharedEngine([RecordingEngine(batch_size=4)])
    shared.close()
    with pytest.raises(SharedEngineError, match="closed"):
        shared.stream_engine(2).submit(stream_batches(1, 2, 2)[0])
    other = RecordingEngine(batch_size=4)
    other.image_size = (16, 16)
    with pytest.raises(ValueError, match="image size"):
        SharedEngine([RecordingEngine(batch_size=4), other])
