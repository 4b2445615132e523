"""EfficientDet construction for every size: parameter counts, backbone scaling, BiFPN wiring, shapes."""
from __future__ import annotations

import math

import pytest
import torch

from effdet_video.configs import get_model_config
from effdet_video.models.bifpn import FpnNodeSpec, bifpn_nodes
from effdet_video.models.build import build_model
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.efficientnet import EfficientNetFeatures, block_specs
from effdet_video.ops.depthwise import tf_same_padding

# AutoML README "#Params" column.
PUBLISHED_PARAMS_M = {"d0": 3.9, "d1": 6.6, "d2": 8.1, "d3": 12.0, "d4": 20.7, "d5": 33.7, "d6": 51.9, "d7": 51.9,
                      "d7x": 77.0}


@pytest.mark.parametrize("name", list(PUBLISHED_PARAMS_M))
def test_parameter_count_matches_automl(name: str) -> None:
    with torch.device("meta"):
        model = EfficientDet(get_model_config(name))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    published = PUBLISHED_PARAMS_M[name]
    assert abs(params - published) / published < 0.01, f"{name}: {params:.3f}M vs {published}M"


@pytest.mark.parametrize("backbone, blocks, channels", [
    ("efficientnet-b0", 16, (40, 112, 320)),
    ("efficientnet-b1", 23, (40, 112, 320)),
    ("efficientnet-b2", 23, (48, 120, 352)),
    ("efficientnet-b3", 26, (48, 136, 384)),
    ("efficientnet-b4", 32, (56, 160, 448)),
    ("efficientnet-b5", 39, (64, 176, 512)),
    ("efficientnet-b6", 45, (72, 200, 576)),
    ("efficientnet-b7", 55, (80, 224, 640)),
])
def test_backbone_scaling(backbone: str, blocks: int, channels: tuple[int, int, int]) -> None:
    assert len(block_specs(backbone)) == blocks
    with torch.device("meta"):
        features = EfficientNetFeatures(backbone, range(3, 6), "swish", 1e-3)
    assert features.feature_channels == channels


@pytest.mark.parametrize("size, kernel, stride, expected", [
    (512, 3, 2, (0, 1)), (511, 3, 2, (1, 1)), (64, 5, 2, (1, 2)), (63, 5, 2, (2, 2)), (10, 3, 1, (1, 1)),
    (1, 3, 2, (1, 1)), (8, 1, 1, (0, 0)),
])
def test_tf_same_padding(size: int, kernel: int, stride: int, expected: tuple[int, int]) -> None:
    assert tf_same_padding(size, kernel, stride) == expected


def test_bifpn_nodes_p3_p7() -> None:
    """The node list in AutoML's bifpn_config docstring."""
    assert bifpn_nodes(3, 7) == [
        FpnNodeSpec(6, (3, 4)), FpnNodeSpec(5, (2, 5)), FpnNodeSpec(4, (1, 6)), FpnNodeSpec(3, (0, 7)),
        FpnNodeSpec(4, (1, 7, 8)), FpnNodeSpec(5, (2, 6, 9)), FpnNodeSpec(6, (3, 5, 10)), FpnNodeSpec(7, (4, 11)),
    ]


def test_any_image_size_halves_with_ceil() -> None:
    model = build_model(get_model_config("d0"), None, random=True)
    height, width = 100, 130
    with torch.no_grad():
        cls_outs, box_outs = model(torch.randn(1, 3, height, width))
    expected = []
    for level in range(1, 8):
        height, width = math.ceil(height / 2), math.ceil(width / 2)
        if level >= 3:
            expected.append((height, width))
    assert [tuple(c.shape[-2:]) for c in cls_outs] == expected
    assert [tuple(b.shape[-2:]) for b in box_outs] == expected
    assert {c.shape[1] for c in cls_outs} == {9 * 90} and {b.shape[1] for b in box_outs} == {9 * 4}
    assert all(torch.isfinite(t).all() for t in cls_outs + box_outs)


def test_channels_last_gives_the_same_outputs() -> None:
    model = build_model(get_model_config("d0"), None, random=True)
    x = torch.randn(2, 3, 96, 160)
    with torch.no_grad():
        reference = model(x)
        model = model.to(memory_format=torch.channels_last)
        result = model(x.to(memory_format=torch.channels_last))
    for ours, ref in zip(result[0] + result[1], reference[0] + reference[1]):
        torch.testing.assert_close(ours, ref, atol=1e-4, rtol=1e-4)


def test_random_weights_are_seeded_and_eval_mode() -> None:
    first = build_model(get_model_config("d0"), None, random=True)
    second = build_model(get_model_config("d0"), None, random=True)
    assert not first.training
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items()):
        assert torch.equal(a, b), name
    assert first.class_net.predict.pointwise.bias[0].item() == pytest.approx(-math.log(99))


def test_build_model_needs_weights_unless_random() -> None:
    with pytest.raises(ValueError, match="weights"):
        build_model(get_model_config("d0"), None, random=False)


@pytest.mark.gpu
def test_compiled_cuda_graph_matches_eager() -> None:
    model = build_model(get_model_config("d0"), None, random=True).cuda().to(memory_format=torch.channels_last)
    x = torch.randn(2, 3, 512, 512, device="cuda").to(memory_format=torch.channels_last)
    with torch.no_grad():
        eager = model(x)
        compiled = torch.compile(model, mode="reduce-overhead", fullgraph=True)
        for _ in range(3):  # warm-up, then replays of the captured graph
            result = compiled(x)
    for ours, ref in zip(result[0] + result[1], eager[0] + eager[1]):
        torch.testing.assert_close(ours, ref, atol=2e-3, rtol=2e-3)
