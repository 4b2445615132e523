"""The CUDA engine against the CPU engine on the AutoML fixture (same weights, same uint8 frames)."""
from __future__ import annotations

import numpy as np
import pytest

from effdet_video.engine.cpu import CpuEngine
from effdet_video.engine.spec import EngineSpec
from tests.engine_inputs import FIXTURE, fixture_batch

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def cpu_reference(automl_fixtures):
    spec = EngineSpec(weights=str(automl_fixtures / f"{FIXTURE}.h5"), batch_size=2, device="cpu")
    batch = fixture_batch(automl_fixtures)
    return spec, batch, CpuEngine(spec).infer(batch)


def _cuda_detections(spec, batch, **overrides):
    import dataclasses

    from effdet_video.engine.cuda import CudaEngine

    with CudaEngine(dataclasses.replace(spec, device="cuda", **overrides)) as engine:
        first = engine.submit(batch)
        second = engine.submit(batch)  # two in flight through the ring: both must come back whole
        return first.result(), second.result()


def test_fp32_cuda_engine_equals_cpu_engine(cpu_reference):
    spec, batch, reference = cpu_reference
    first, second = _cuda_detections(spec, batch, precision="fp32")
    np.testing.assert_array_equal(first.num_valid, reference.num_valid)
    np.testing.assert_allclose(first.detections, reference.detections, atol=1e-3, rtol=1e-4)
    np.testing.assert_array_equal(second.detections, first.detections)


@pytest.mark.parametrize("precision, score_bound, box_bound_px", [("fp16", 0.02, 2.0), ("bf16", 0.1, 8.0)])
def test_reduced_precision_deviation_is_bounded(cpu_reference, precision, score_bound, box_bound_px):
    """fp16/bf16 networks (decode and NMS stay fp32): the best detections keep their class, their score
    within `score_bound` and their box within `box_bound_px` frame pixels of the fp32 CPU result."""
    spec, batch, reference = cpu_reference
    result, _ = _cuda_detections(spec, batch, precision=precision)
    top = 10
    for i in range(batch.count):
        ours, ref = result.frame(i)[:top], reference.frame(i)[:top]
        for row in ref:  # match by best box overlap of the same class: soft-NMS order may swap near-ties
            same = ours[ours[:, 5] == row[5]]
            assert len(same), f"{precision}: class {row[5]} lost in frame {i}"
            nearest = same[np.abs(same[:, :4] - row[:4]).max(axis=1).argmin()]
            assert np.abs(nearest[:4] - row[:4]).max() <= box_bound_px
            assert abs(nearest[4] - row[4]) <= score_bound
