"""Host buffers of one fixed-size engine batch, and the padding rule of a partial one, for every packer
(the pipeline's EngineBatcher, the shared engine's dispatchers, the Ray Data detector)."""
from __future__ import annotations

import numpy as np

from effdet_video.engine.base import InferenceBatch


class BatchBuffer:
    """Reused from batch to batch, so that packing allocates nothing: rows are copied in with `put` (or
    written in place), and `batch(count)` pads the rows from `count` on as rows nobody reads: valid size
    0 and scale 1.0, their pixels left as they are."""

    def __init__(self, size: int, height: int, width: int) -> None:
        self.images = np.zeros((size, height, width, 3), dtype=np.uint8)
        self.valid_hw = np.zeros((size, 2), dtype=np.int32)
        self.scales = np.ones(size, dtype=np.float32)

    def put(self, rows: int | slice, images: np.ndarray, valid_hw: object, scales: object) -> None:
        """Copy letterboxed images, with their valid (height, width) and scales, into `rows`."""
        self.images[rows] = images
        self.valid_hw[rows] = valid_hw
        self.scales[rows] = scales

    def batch(self, count: int) -> InferenceBatch:
        """The engine input of the first `count` rows, the rest padded; its arrays are the buffer's own,
        which the engine contract lets the caller reuse once `submit` returns."""
        self.valid_hw[count:] = 0
        self.scales[count:] = 1.0
        return InferenceBatch(self.images, self.valid_hw, self.scales, count)
