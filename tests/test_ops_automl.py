"""Parity of effdet_video.ops with Google AutoML (no model needed): pre-processing from the raw frames of the
efficientdet-d0-seed1 fixture, post-processing from the raw network outputs of efficientdet-d0-seed0, whose
class maps are stored in full."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from effdet_video.configs import NmsConfig, get_model_config
from effdet_video.ops.anchors import generate_anchors
from effdet_video.ops.letterbox import letterbox_geometry, letterbox_uint8, normalize_and_mask, preprocess_exact
from effdet_video.ops.postprocess import (
    DEFAULT_CANDIDATES,
    detect,
    flatten_codes,
    flatten_levels,
    pre_nms,
    preselection_is_exact,
    score_anchors,
    score_levels,
    select_candidates,
)
from tests.support.automl_fixture import LEVELS, SEED0, SEED1, load_npz, load_sidecar

CONFIG = get_model_config("d0")
# (npz key prefix, NMS config) of the two post-processing variants the fixture stores.
NMS_VARIANTS = {"gaussian": ("det_", CONFIG.nms), "hard": ("hard_det_", NmsConfig(method="hard", iou_thresh=0.5))}


@pytest.fixture(scope="module")
def npz(automl_fixtures):
    """SEED0: AutoML's head outputs in full, for the post-processing tests."""
    return load_npz(automl_fixtures, SEED0)


@pytest.fixture(scope="module")
def seed1(automl_fixtures):
    """SEED1: the raw frames and AutoML's network inputs, for the pre-processing tests."""
    return load_npz(automl_fixtures, SEED1)


@pytest.fixture(scope="module")
def sidecar(automl_fixtures):
    return load_sidecar(automl_fixtures, SEED1)


@pytest.fixture(scope="module")
def head_outputs(npz):
    """The fixture's NHWC per-level outputs as our NCHW head outputs."""
    cls = [torch.from_numpy(npz[f"cls_l{level}"]).permute(0, 3, 1, 2) for level in LEVELS]
    box = [torch.from_numpy(npz[f"box_l{level}"]).permute(0, 3, 1, 2) for level in LEVELS]
    return cls, box


@pytest.fixture(scope="module")
def anchors():
    return generate_anchors(CONFIG)


def test_anchors_equal_automl(npz, anchors):
    assert anchors.dtype == torch.float32
    assert anchors.shape == npz["anchors"].shape
    np.testing.assert_allclose(anchors.numpy(), npz["anchors"], rtol=0, atol=1e-4)


def test_pre_nms_equals_automl(npz, head_outputs, anchors):
    scores, classes, boxes = pre_nms(*head_outputs, anchors, CONFIG.num_classes)
    np.testing.assert_allclose(scores.numpy(), npz["pre_nms_scores"], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(classes.numpy(), npz["pre_nms_classes"])
    np.testing.assert_allclose(boxes.numpy(), npz["pre_nms_boxes"], rtol=0, atol=1e-3)


@pytest.mark.parametrize("frame", [0, 1])
def test_letterbox_geometry_equals_automl(sidecar, seed1, frame):
    expected = sidecar["frames"][frame]
    geometry = letterbox_geometry(seed1["raw_hw"][frame], CONFIG.image_size)
    assert geometry.scale == expected["scale_s"]
    assert geometry.image_scale == expected["image_scale"] == seed1["image_scales"][frame]
    assert geometry.resized_hw == tuple(expected["resized_hw"])


def test_image_scale_is_float32_reciprocal():
    """The sidecar's example: 1080p at 512 gives 1 / s in float32 = 3.7499998, not 3.75."""
    geometry = letterbox_geometry((1080, 1920), (512, 512))
    assert geometry.resized_hw == (288, 512)
    assert geometry.image_scale == float(np.float32(3.7499998))


@pytest.mark.parametrize("frame", [0, 1])
def test_preprocess_exact_equals_automl(seed1, frame):
    """AutoML's network input from the raw frame to float32 rounding (measured: 4.8e-7 at worst)."""
    inputs = preprocess_exact(seed1[f"images_uint8_{frame}"], CONFIG)
    assert inputs.shape == (3, 512, 512) and inputs.dtype == torch.float32
    np.testing.assert_allclose(inputs.permute(1, 2, 0).numpy(), seed1["inputs"][frame], rtol=0, atol=1e-6)


@pytest.mark.parametrize("frame", [0, 1])
def test_fast_letterbox_stays_close_to_automl(seed1, frame):
    """The pipeline's uint8 OpenCV resize + on-device normalisation vs AutoML's float path: the bound
    documented in ops/letterbox.py (measured: max 0.0126, mean 0.0039 on these frames)."""
    image = seed1[f"images_uint8_{frame}"]
    letterboxed, geometry = letterbox_uint8(image, CONFIG.image_size)
    valid_hw = torch.tensor([geometry.resized_hw])
    fast = normalize_and_mask(torch.from_numpy(letterboxed)[None], valid_hw, CONFIG.mean_rgb, CONFIG.stddev_rgb)[0]
    error = (fast - preprocess_exact(image, CONFIG)).abs()
    height, width = geometry.resized_hw
    assert error.max() < 0.02
    assert error[:, :height, :width].mean() < 0.006
    assert error[:, height:, :].sum() == 0 and error[:, :, width:].sum() == 0


def _run_detect(npz, head_outputs, anchors, nms, **kwargs):
    return detect(*head_outputs, anchors, torch.from_numpy(npz["image_scales"]), CONFIG.image_size, nms, **kwargs)


@pytest.fixture(scope="module", params=list(NMS_VARIANTS))
def detected(request, npz, head_outputs, anchors):
    """(method, npz key prefix, nms config, detect's output with the default candidates)."""
    prefix, nms = NMS_VARIANTS[request.param]
    return request.param, prefix, nms, _run_detect(npz, head_outputs, anchors, nms)


def _assert_matches_automl(npz, prefix, detections, num_valid, rows=None, box_atol=0.5, score_atol=1e-4):
    """Box for box over the valid rows (or the first `rows`): coordinates, scores, classes."""
    np.testing.assert_array_equal(num_valid.numpy(), npz[prefix + "valid"])
    for frame, valid in enumerate(npz[prefix + "valid"]):
        count = rows or valid
        ours = detections[frame, :count].numpy()
        theirs_xyxy = npz[prefix + "boxes"][frame, :count][:, [1, 0, 3, 2]]
        np.testing.assert_allclose(ours[:, :4], theirs_xyxy, rtol=0, atol=box_atol)
        np.testing.assert_allclose(ours[:, 4], npz[prefix + "scores"][frame, :count], rtol=0, atol=score_atol)
        np.testing.assert_array_equal(ours[:, 5], npz[prefix + "classes"][frame, :count])
        assert not detections[frame, valid:].any()


def test_detect_equals_automl(npz, detected):
    _, prefix, _, (detections, num_valid) = detected
    assert detections.shape == (2, 100, 6) and detections.dtype == torch.float32
    assert num_valid.dtype == torch.int32
    _assert_matches_automl(npz, prefix, detections, num_valid)


def test_candidate_preselection_is_exact_on_fixture(npz, head_outputs, anchors, detected):
    """AutoML runs NMS over all 49104 anchors, so the parity above already shows the default top-K changes
    nothing here; the cheap check must agree, and must flag a K too small to be exact."""
    _, prefix, nms, (detections, num_valid) = detected
    scores, _ = score_anchors(flatten_levels(*head_outputs, CONFIG.num_classes)[0])
    assert preselection_is_exact(scores, detections, num_valid, DEFAULT_CANDIDATES, nms).all()
    few, few_valid = _run_detect(npz, head_outputs, anchors, nms, candidates=100)
    assert not preselection_is_exact(scores, few, few_valid, 100, nms).any()
    assert not np.allclose(few[:, :, 4].numpy(), npz[prefix + "scores"], rtol=0, atol=1e-4)


def test_detect_accepts_float16_outputs(npz, head_outputs, anchors, detected):
    """fp16 head outputs (the CUDA engine's precision), float32 anchors and scales: float32 results whose
    best detections are still AutoML's."""
    _, prefix, nms, _ = detected
    cls, box = ([level.half() for level in outputs] for outputs in head_outputs)
    detections, num_valid = _run_detect(npz, (cls, box), anchors, nms)
    assert detections.dtype == torch.float32
    _assert_matches_automl(npz, prefix, detections, num_valid, rows=10, box_atol=1.0, score_atol=1e-3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_level_scoring_equals_flattened_scoring(head_outputs, dtype):
    """The engine scores each level in the head's layout (`score_levels`); it must give the flattened
    formulation's scores and classes exactly, ties (first class wins) included."""
    cls, box = ([level.to(dtype) for level in outputs] for outputs in head_outputs)
    cls[0] = cls[0].clone()
    cls[0][:, 3 * CONFIG.num_classes + 7] = cls[0][:, 3 * CONFIG.num_classes + 2]  # a tie in anchor 3's classes
    expected = score_anchors(flatten_levels(cls, box, CONFIG.num_classes)[0])
    got = score_levels(cls, CONFIG.num_classes)
    assert torch.equal(got[0], expected[0]) and torch.equal(got[1], expected[1])
    assert torch.equal(flatten_codes(box), flatten_levels(cls, box, CONFIG.num_classes)[1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_candidates_classes_are_the_flattened_argmax(head_outputs, anchors, dtype):
    """`select_candidates` may find the class of the anchors it keeps only (an argmax over their gathered
    logits, as a CPU engine does): it must be the flattened formulation's class of those anchors, ties (first class wins) and
    anchors of every level included, for each image of a batch."""
    cls, box = ([torch.cat([level, level.flip(0) * 0.5]).to(dtype) for level in outputs] for outputs in head_outputs)
    cls[0] = cls[0].clone()
    cls[0][:, 3 * CONFIG.num_classes + 7] = cls[0][:, 3 * CONFIG.num_classes + 2] = 30.0  # anchor 3 of each location
    scores, classes, boxes = select_candidates(cls, box, anchors, candidates=20000, kept_classes_only=True)
    all_scores, all_classes = score_anchors(flatten_levels(cls, box, CONFIG.num_classes)[0])
    chosen = all_scores.topk(20000, dim=1, sorted=False).indices.sort(dim=1).values
    assert torch.equal(scores, all_scores.gather(1, chosen))
    assert torch.equal(classes, all_classes.gather(1, chosen))
    levels = torch.bucketize(chosen, torch.tensor([64 * 64 * 9, 64 * 64 * 9 + 32 * 32 * 9]), right=True)
    assert levels.unique().numel() == 3 and (classes == 2).any()
    assert boxes.shape == (2 * head_outputs[0][0].shape[0], 20000, 4)
