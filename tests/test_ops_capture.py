"""The device-side ops hold no data-dependent shapes or host syncs, so the engine can capture them:
traced whole by torch.compile(fullgraph=True) on CPU, replayed from a CUDA graph on a GPU."""
from __future__ import annotations

import pytest
import torch

from effdet_video.configs import NmsConfig, get_model_config
from effdet_video.ops.anchors import generate_anchors
from effdet_video.ops.letterbox import normalize_and_mask
from effdet_video.ops.postprocess import detect

CONFIG = get_model_config("d0")
IMAGE_SIZE = (64, 96)
METHODS = (NmsConfig(method="gaussian"), NmsConfig(method="hard"))


def _device_step(images, valid_hw, image_scales, cls_outputs, box_outputs, anchors, nms, max_det):
    """What the engine's graph does around the network: normalise the uint8 input (which the network would
    consume), and detect from the head outputs."""
    inputs = normalize_and_mask(images, valid_hw, CONFIG.mean_rgb, CONFIG.stddev_rgb)
    detections, num_valid = detect(cls_outputs, box_outputs, anchors, image_scales, IMAGE_SIZE, nms, max_det, 200)
    return inputs, detections, num_valid


def _example(device: str, batch: int = 2):
    generator = torch.Generator().manual_seed(0)
    anchors = generate_anchors(CONFIG, IMAGE_SIZE)
    feature_hw = [(8, 12), (4, 6), (2, 3), (1, 2), (1, 1)]
    channels = CONFIG.num_anchors * CONFIG.num_classes
    cls = [torch.randn(batch, channels, h, w, generator=generator) * 3 - 3 for h, w in feature_hw]
    box = [torch.randn(batch, CONFIG.num_anchors * 4, h, w, generator=generator) * 0.3 for h, w in feature_hw]
    images = torch.randint(0, 256, (batch, *IMAGE_SIZE, 3), dtype=torch.uint8, generator=generator)
    valid_hw = torch.tensor([[48, 96], [64, 80]], dtype=torch.int32)
    scales = torch.tensor([2.5, 1.25])
    to = lambda t: t.to(device)  # noqa: E731
    return to(images), to(valid_hw), to(scales), [to(c) for c in cls], [to(b) for b in box], to(anchors)


def _flatten(example) -> list[torch.Tensor]:
    images, valid_hw, scales, cls, box, anchors = example
    return [images, valid_hw, scales, *cls, *box, anchors]


@pytest.mark.parametrize("nms", METHODS, ids=lambda nms: nms.method)
def test_device_step_traces_as_one_graph(nms):
    """fullgraph=True raises on any graph break: .item(), nonzero, boolean masks, data-dependent shapes."""
    example = _example("cpu")
    compiled = torch.compile(_device_step, backend="eager", fullgraph=True, dynamic=False)
    torch.testing.assert_close(compiled(*example, nms, 2), _device_step(*example, nms, 2))


@pytest.mark.gpu
@pytest.mark.parametrize("nms", METHODS, ids=lambda nms: nms.method)
def test_device_step_replays_from_a_cuda_graph(nms):
    example = _example("cuda")
    expected = _device_step(*example, nms, 100)
    static = [[torch.zeros_like(t) for t in x] if isinstance(x, list) else torch.zeros_like(x) for x in example]
    static_tensors, example_tensors = _flatten(static), _flatten(example)
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        _device_step(*static, nms, 100)  # warm-up outside the capture
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        captured = _device_step(*static, nms, 100)
    for slot, value in zip(static_tensors, example_tensors):  # captured on zeros: replay must read new inputs
        slot.copy_(value)
    graph.replay()
    torch.cuda.synchronize()
    assert expected[2].min() > 0
    torch.testing.assert_close(captured, expected)
