"""The engine contract shared by the CPU and CUDA engines.

An engine is built for one (model, image size, batch size, precision, device). It takes a fixed-size
batch of letterboxed uint8 frames and returns a fixed-size detection tensor: the pipeline never sees
feature maps. `submit` may return before the work is done (the CUDA engine keeps several batches in
flight); results must be collected in submission order.
"""
from __future__ import annotations

import abc
import dataclasses

import numpy as np

DETECTION_FIELDS = ("x0", "y0", "x1", "y1", "score", "class_id")


@dataclasses.dataclass
class InferenceBatch:
    """One engine input. Rows >= `count` are padding (a partial last batch) and their results are ignored.

    images:       uint8 [B, H, W, 3] RGB, the frame resized (AutoML's rule) into the top-left corner.
    valid_hw:     int32 [B, 2], the resized content's (height, width); the rest is padding.
    image_scales: float32 [B], 1 / resize factor: multiplies network-space boxes back to frame pixels.
    """

    images: np.ndarray
    valid_hw: np.ndarray
    image_scales: np.ndarray
    count: int


@dataclasses.dataclass
class DetectionBatch:
    """detections: float32 [B, max_det, 6] rows (x0, y0, x1, y1, score, class_id) in original-frame
    pixels, class_id the 1-based COCO category id, best first; num_valid: int32 [B] rows in use."""

    detections: np.ndarray
    num_valid: np.ndarray
    count: int

    def frame(self, i: int) -> np.ndarray:
        """The valid detection rows of frame i, [n, 6]."""
        return self.detections[i, : int(self.num_valid[i])]


class PendingDetections(abc.ABC):
    """Handle for a submitted batch."""

    @abc.abstractmethod
    def result(self) -> DetectionBatch:
        """Block until the batch is done and return it (host memory, safe to keep)."""

    def done(self) -> bool:
        """Whether `result` would return at once (False where the engine cannot tell without waiting)."""
        return False


class ReadyDetections(PendingDetections):
    """A result that is already computed (synchronous engines)."""

    def __init__(self, batch: DetectionBatch) -> None:
        self._batch = batch

    def result(self) -> DetectionBatch:
        return self._batch

    def done(self) -> bool:
        return True


class Engine(abc.ABC):
    """Runs normalise -> EfficientDet -> box decode -> NMS -> scale to frame pixels on one batch."""

    batch_size: int
    image_size: tuple[int, int]  # (height, width)
    max_det: int
    device: str
    # Batches the engine works on at the same time: a caller that wants throughput keeps at least this
    # many submitted (a CPU runtime's parallel streams); 1 for engines that run one batch at a time.
    parallel_batches: int = 1

    @abc.abstractmethod
    def submit(self, batch: InferenceBatch) -> PendingDetections:
        """Queue one batch (its arrays may be reused by the caller once this returns)."""

    def infer(self, batch: InferenceBatch) -> DetectionBatch:
        return self.submit(batch).result()

    def settle(self) -> None:
        """Block until the engine runs its fastest graph (a quick-starting CUDA engine changes to its
        compiled one now, which it otherwise does only once the GPU bounds the run); benchmarks time that
        one. The default has nothing to wait for."""

    def close(self) -> None:
        """Release device resources; the default has none."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
