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

    spec = dataclasses.replace(spec, **{"device": "cuda", **overrides})
    with CudaEngine(spec, spec.device) as engine:
        assert engine.build_info["captured"]  # the whole graph replays as one CUDA graph
        first = engine.submit(batch)
        second = engine.submit(batch)  # two in flight through the ring: both must come back whole
        return first.result(), second.result()


def _nearest_rows(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each reference row, our row of the same class nearest to it: soft-NMS may order two scores
    that differ in the last bits either way, which swaps rows without changing the detections."""
    rows = []
    for row in reference:
        same = ours[ours[:, 5] == row[5]]
        assert len(same), f"class {row[5]} missing"
        rows.append(same[np.abs(same[:, :5] - row[:5]).max(axis=1).argmin()])
    return np.stack(rows)


# cuda:1 as well where there is one: each engine captures on a stream of its own device (torch's default
# capture stream lives on the device current when it was first made, and a second GPU captured nothing).
@pytest.mark.parametrize("device", ["cuda:0", "cuda:1"])
def test_fp32_cuda_engine_equals_cpu_engine(cpu_reference, device):
    import torch

    if int(device[-1]) >= torch.cuda.device_count():
        pytest.skip(f"no {device}")
    spec, batch, reference = cpu_reference
    first, second = _cuda_detections(spec, batch, precision="fp32", device=device)
    np.testing.assert_array_equal(first.num_valid, reference.num_valid)
    for i in range(batch.count):
        np.testing.assert_allclose(_nearest_rows(first.frame(i), reference.frame(i)), reference.frame(i),
                                   rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(second.detections, first.detections)


# Measured on the H100 (torch 2.11): fp16 sorted-score deviation 0.019 / 0.032, best box 2.4 / 6.2 network
# pixels, same best class; bf16 score deviation 0.063 to 0.115 (two runs), and its best detection is
# another box, even of another class. The fixture's conditioned weights make the network chaotic (TF's
# own float32 run is 0.075 logits from exact) and saturate many scores near 0.98, so near-ties decide
# which box leads: bf16's 8-bit mantissa flips them. Hence for bf16 only the score distribution is bounded.
@pytest.mark.parametrize("precision, score_bound, box_bound_net_px", [("fp16", 0.05, 8.0), ("bf16", 0.2, None)])
def test_reduced_precision_deviation_is_bounded(cpu_reference, precision, score_bound, box_bound_net_px):
    """fp16/bf16 networks (decode and NMS stay fp32) against the fp32 CPU engine: same number of
    detections, sorted score lists within `score_bound`; for fp16 also the same best class and its box
    within `box_bound_net_px` network-input pixels."""
    spec, batch, reference = cpu_reference
    result, _ = _cuda_detections(spec, batch, precision=precision)
    for i in range(batch.count):
        ours, ref = result.frame(i), reference.frame(i)
        score_dev = np.abs(np.sort(ours[:, 4]) - np.sort(ref[:, 4])).max()
        box_dev = np.abs(ours[0, :4] - ref[0, :4]).max() / batch.image_scales[i]
        assert len(ours) == len(ref)
        assert score_dev <= score_bound
        if box_bound_net_px is not None:
            assert ours[0, 5] == ref[0, 5]
            assert box_dev <= box_bound_net_px


@pytest.mark.slow
def test_quick_start_changes_to_the_compiled_graph_once_the_gpu_bounds_the_run(cpu_reference, tmp_path,
                                                                               monkeypatch):
    """A batch-8 engine whose compiled network is cached starts uncompiled; batches taken one at a time
    leave it so, SATURATED_RUN submissions that wait for the GPU swap the compiled graph in, and the
    detections stay the CPU engine's across the swap. (Batches of the fixture's 2 frames: the GPU
    computes 8, so a flood of them outruns it for sure.)"""
    import dataclasses

    from effdet_video.engine.cuda import IN_FLIGHT, SATURATED_RUN, CudaEngine

    monkeypatch.setenv("EFFDET_VIDEO_HOME", str(tmp_path))
    spec, batch, reference = cpu_reference
    spec = dataclasses.replace(spec, device="cuda", precision="fp32", batch_size=8)
    with CudaEngine(spec, "cuda:0", compiler="inductor") as engine:  # cache miss: compiled before any batch
        assert engine.build_info["engine_cache"] == "miss" and engine.build_info["compiler"] == "inductor"

    def assert_reference(result) -> None:  # batch 8's fp32 matmuls: 4.8e-3 px off at worst (H200), not 1e-3
        np.testing.assert_array_equal(result.num_valid[: batch.count], reference.num_valid)
        for i in range(batch.count):
            np.testing.assert_allclose(_nearest_rows(result.frame(i), reference.frame(i)), reference.frame(i),
                                       rtol=1e-3, atol=1e-2)

    with CudaEngine(spec, "cuda:0", compiler="inductor") as engine:
        assert engine.build_info["compiler"] == "eager" and engine.build_info["compiled_later"]
        for _ in range(2 * SATURATED_RUN):
            assert_reference(engine.infer(batch))  # one in flight: the GPU waits for us, never we for it
        assert "compile_started_s" not in engine.build_info
        flood = [engine.submit(batch) for _ in range(4 * SATURATED_RUN + IN_FLIGHT)]  # GPU-bound
        assert "compile_started_s" in engine.build_info
        for pending in flood:
            assert_reference(pending.result())
        engine.settle()
        assert engine.build_info["compiler"] == "inductor" and "compile_error" not in engine.build_info
        assert_reference(engine.infer(batch))
