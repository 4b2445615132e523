"""The detection graph and CPU engine on the AutoML fixtures, and the engine factory's errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from effdet_video.configs import get_model_config
from effdet_video.engine.cpu import CpuEngine
from effdet_video.engine.factory import build_engine
from effdet_video.engine.graph import DetectionGraph, host_nms, model_config
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from effdet_video.ops.letterbox import letterbox_geometry, preprocess_exact
from tests.support.automl_fixture import NMS_PREFIXES, SEED0, SEED1, assert_same_detections, load_npz, reference_rows


@pytest.fixture(scope="module")
def fixture_data(automl_fixtures):
    """SEED0: AutoML's head outputs in full, to feed the graph's post-processing."""
    return load_npz(automl_fixtures, SEED0)


class FixtureHeads(nn.Module):
    """Stands in for the network: returns AutoML's own head outputs, so the graph's decode, NMS and
    formatting are checked on their own."""

    def __init__(self, data: dict) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        self.cls = [torch.from_numpy(data[f"cls_l{level}"]).permute(0, 3, 1, 2) for level in range(3, 8)]
        self.box = [torch.from_numpy(data[f"box_l{level}"]).permute(0, 3, 1, 2) for level in range(3, 8)]

    def forward(self, x: torch.Tensor):
        return self.cls, self.box


def _assert_matches_automl(detections: np.ndarray, num_valid: np.ndarray, data: dict, prefix: str) -> None:
    np.testing.assert_array_equal(num_valid, data[prefix + "valid"])
    xyxy = data[prefix + "boxes"][..., [1, 0, 3, 2]]
    np.testing.assert_allclose(detections[..., :4], xyxy, atol=0.5, rtol=0)
    np.testing.assert_allclose(detections[..., 4], data[prefix + "scores"], atol=1e-4, rtol=0)
    np.testing.assert_array_equal(detections[..., 5], data[prefix + "classes"])


@pytest.mark.parametrize("method", ["gaussian", "hard"])
@pytest.mark.parametrize("mode", ["device", "host"])
def test_graph_postprocessing_reproduces_automl_detections(fixture_data, method, mode):
    config = model_config(EngineSpec(nms_method=method))
    graph = DetectionGraph(FixtureHeads(fixture_data), config, mode=mode)
    x = torch.from_numpy(fixture_data["inputs"]).permute(0, 3, 1, 2)
    scales = torch.from_numpy(fixture_data["image_scales"])
    outputs = graph.from_normalized(x, scales)
    if mode == "host":
        assert outputs[0].shape == (2, graph.candidates)  # only candidates leave the device
        outputs = host_nms(outputs[:3], outputs[3], config, 100)
    detections, num_valid = outputs
    assert detections.shape == (2, 100, 6)
    _assert_matches_automl(detections.numpy(), num_valid.numpy(), fixture_data, NMS_PREFIXES[method])


@pytest.mark.parametrize("method", list(NMS_PREFIXES))
def test_cpu_engine_reproduces_automl_detections_from_raw_frames(automl_fixtures, method):
    """Our own path end to end on the calm fixture: each raw uint8 frame, AutoML's exact pre-processing,
    the engine (EfficientDet from AutoML's .h5, float32, decode, top-K, NMS) -> AutoML's float32 detections
    box for box."""
    data = load_npz(automl_fixtures, SEED1)
    config = get_model_config("d0")
    inputs = torch.stack([preprocess_exact(data[f"images_uint8_{i}"], config) for i in range(len(data["raw_hw"]))])
    scales = np.array([letterbox_geometry(hw, config.image_size).image_scale for hw in data["raw_hw"]], np.float32)
    spec = EngineSpec(weights=str(automl_fixtures / f"{SEED1}.h5"), batch_size=2, device="cpu", nms_method=method)
    result = CpuEngine(spec).infer_normalized(inputs.permute(0, 2, 3, 1).numpy(), scales)
    prefix = NMS_PREFIXES[method]
    np.testing.assert_array_equal(result.num_valid, data[prefix + "valid"])
    for frame in range(result.count):
        assert_same_detections(result.frame(frame).astype(np.float64), reference_rows(data, prefix, frame),
                               box_px=0.5, score=1e-4)


@pytest.mark.parametrize("field, value, message", [
    ("precision", "fp8", "unknown precision"),
    ("nms_mode", "gpu", "unknown NMS mode"),
    ("batch_size", 0, "batch size"),
    ("device", "tpu", "unknown device"),
])
def test_factory_rejects_bad_specs(field, value, message):
    with pytest.raises(UserError, match=message):
        build_engine(EngineSpec(random_weights=True, **{"device": "cpu", field: value}))


def test_factory_says_when_cuda_is_absent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(UserError, match="sees no CUDA GPU"):
        build_engine(EngineSpec(random_weights=True, device="cuda"))


def test_cpu_engine_refuses_reduced_precision():
    with pytest.raises(UserError, match="needs a CUDA device"):
        build_engine(EngineSpec(random_weights=True, device="cpu", precision="fp16"))
