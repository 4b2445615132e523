"""The detection graph and CPU engine on the AutoML fixture, and the engine factory's errors."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from effdet_video.engine.cpu import CpuEngine
from effdet_video.engine.factory import build_engine
from effdet_video.engine.graph import DetectionGraph, host_nms, model_config
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from tests.engine_inputs import FIXTURE

EXPECTED = {"gaussian": "det_", "hard": "hard_det_"}


@pytest.fixture(scope="module")
def fixture_data(automl_fixtures):
    return dict(np.load(automl_fixtures / f"{FIXTURE}.npz"))


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
    _assert_matches_automl(detections.numpy(), num_valid.numpy(), fixture_data, EXPECTED[method])


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:4], boxes[:, 2:4])
    inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / (area(box) + area(boxes) - inter)


# The fixture holds TF *float32* outputs, which are up to 0.075 (logits) away from exact arithmetic on this
# fixture's conditioned weights (our float64 model matches AutoML's float64 to 1e-10). Box for box equality
# is therefore not attainable from the weights; measured on the top 20 detections of each frame, every
# fixture detection has a same-class engine detection with IoU >= 0.960 and |score diff| <= 0.0020.
TOP, MIN_IOU, MAX_SCORE_DIFF = 20, 0.93, 0.005


@pytest.mark.parametrize("method", ["gaussian", "hard"])
def test_cpu_engine_from_weights_finds_automls_detections(automl_fixtures, fixture_data, method):
    """The whole engine (EfficientDet loaded from AutoML's .h5) on AutoML's exact network inputs."""
    spec = EngineSpec(weights=str(automl_fixtures / f"{FIXTURE}.h5"), batch_size=2, device="cpu",
                      nms_method=method)
    result = CpuEngine(spec).infer_normalized(fixture_data["inputs"], fixture_data["image_scales"])
    prefix = EXPECTED[method]
    np.testing.assert_array_equal(result.num_valid, fixture_data[prefix + "valid"])
    for frame in range(2):
        ours = result.frame(frame)
        boxes = fixture_data[prefix + "boxes"][frame][:TOP, [1, 0, 3, 2]]
        for box, score, class_id in zip(boxes, fixture_data[prefix + "scores"][frame],
                                        fixture_data[prefix + "classes"][frame]):
            same_class = ours[ours[:, 5] == class_id]
            assert len(same_class), f"frame {frame}: no detection of class {class_id}"
            overlaps = _box_iou(box, same_class)
            best = int(np.argmax(overlaps))
            assert overlaps[best] >= MIN_IOU, f"frame {frame}: class {class_id} box {box} best IoU {overlaps[best]}"
            assert abs(same_class[best, 4] - score) <= MAX_SCORE_DIFF


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
