"""The two AutoML fixtures in ../shared/fixtures/automl/ and how tests compare against them.

SEED1 is the parity oracle: calm weights, every output computed by AutoML's TF2 code in float32 and in
float64 (keys ending `_f64`); class maps of levels 3-5 are stored at 128 sampled positions (`cls_lN_yx`).
SEED0 keeps every class map in full (TF float32 only, with weights that amplify rounding): the tests of
post-processing from AutoML's own head outputs use it, which SEED1's sampled maps cannot feed.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import torch

SEED0 = "efficientdet-d0-seed0"
SEED1 = "efficientdet-d0-seed1"
LEVELS = range(3, 8)
# AutoML's two post-processing variants, our NmsConfig.method -> the fixture's npz key prefix. The hard
# variant's IoU threshold, 0.5, is the default NmsConfig resolves to.
NMS_PREFIXES = {"gaussian": "det_", "hard": "hard_det_"}


@functools.lru_cache(maxsize=None)
def load_npz(folder: Path, name: str) -> dict[str, np.ndarray]:
    """Every array of the fixture's .npz (cached: the files are 24-40 MB)."""
    with np.load(folder / f"{name}.npz") as data:
        return dict(data)


def load_sidecar(folder: Path, name: str) -> dict:
    return json.loads((folder / f"{name}.json").read_text())


def as_stored(output: torch.Tensor, data: dict[str, np.ndarray], key: str) -> np.ndarray:
    """One of our NCHW head outputs in the layout of the fixture's `key`: NHWC, and for sampled class
    maps only the stored positions ([N, P, C] at `key + "_yx"`)."""
    nhwc = output.permute(0, 2, 3, 1).numpy()
    positions = data.get(f"{key}_yx")
    return nhwc if positions is None else nhwc[:, positions[:, 0], positions[:, 1], :]


def reference_rows(data: dict[str, np.ndarray], prefix: str, frame: int, suffix: str = "") -> np.ndarray:
    """AutoML's valid detections of one frame as our rows (x0, y0, x1, y1, score, class_id) in float64."""
    valid = int(data[f"{prefix}valid{suffix}"][frame])
    boxes = data[f"{prefix}boxes{suffix}"][frame, :valid][:, [1, 0, 3, 2]]
    scores = data[f"{prefix}scores{suffix}"][frame, :valid, None]
    classes = data[f"{prefix}classes{suffix}"][frame, :valid, None]
    return np.concatenate([boxes, scores, classes], axis=1).astype(np.float64)


def assert_same_detections(ours: np.ndarray, reference: np.ndarray, box_px: float, score: float) -> None:
    """Box for box: the same number of rows, and each reference row i has its own row j of ours with the
    same class, every coordinate within `box_px` and the score within `score`. j = i unless row i of ours
    has a score within `score` of row j's: rows trade places only with rows of nearly equal score (soft-NMS
    can decay two such scores differently by an ulp or so and select them in the other order)."""
    assert len(ours) == len(reference), f"{len(ours)} detections, AutoML has {len(reference)}"

    def matches(j: int, i: int) -> bool:
        row, expected = ours[j], reference[i]
        return (row[5] == expected[5] and np.abs(row[:4] - expected[:4]).max() <= box_px
                and abs(row[4] - expected[4]) <= score and abs(row[4] - ours[i, 4]) <= score)

    unused = list(range(len(ours)))
    for i, expected in enumerate(reference):
        order = sorted(unused, key=lambda j: (j != i, abs(ours[j, 4] - expected[4])))
        found = next((j for j in order if matches(j, i)), None)
        assert found is not None, (f"AutoML row {i} {expected.tolist()} has no match; our row {i}: "
                                   f"{ours[i].tolist()}")
        unused.remove(found)
