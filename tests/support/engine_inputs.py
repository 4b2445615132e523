"""The AutoML parity fixture's frames as an engine input batch (our uint8 letterbox), shared by engine tests."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from effdet_video.engine.base import InferenceBatch
from effdet_video.ops.letterbox import letterbox_uint8
from tests.support.automl_fixture import SEED1, load_npz

FIXTURE = SEED1


def fixture_batch(fixtures: Path, image_size: tuple[int, int] = (512, 512)) -> InferenceBatch:
    data = load_npz(fixtures, FIXTURE)
    frames = [data[f"images_uint8_{i}"] for i in range(len(data["raw_hw"]))]
    boxed = [letterbox_uint8(frame, image_size) for frame in frames]
    return InferenceBatch(np.stack([b for b, _ in boxed]),
                          np.array([g.resized_hw for _, g in boxed], np.int32),
                          np.array([g.image_scale for _, g in boxed], np.float32), len(frames))
