"""Static-shape NMS: TF NonMaxSuppressionV5 semantics (against a port of its heap algorithm), class-aware
NMS on a hand-made example, thresholds and padding."""
from __future__ import annotations

import heapq
import math

import numpy as np
import pytest
import torch

from effdet_video.configs import NmsConfig
from effdet_video.ops.nms import non_max_suppression
from effdet_video.ops.nms_host import host_non_max_suppression

GAUSSIAN = NmsConfig(method="gaussian")
HARD = NmsConfig(method="hard", iou_thresh=0.5)


def _iou_f32(a: np.ndarray, b: np.ndarray) -> np.float32:
    """One pair, as TF's kernel: corners ordered, 0 for an empty box."""
    lo_a, hi_a = np.minimum(a[:2], a[2:]), np.maximum(a[:2], a[2:])
    lo_b, hi_b = np.minimum(b[:2], b[2:]), np.maximum(b[:2], b[2:])
    area_a, area_b = np.prod(hi_a - lo_a), np.prod(hi_b - lo_b)
    if area_a <= 0 or area_b <= 0:
        return np.float32(0)
    inter = np.prod(np.maximum(np.minimum(hi_a, hi_b) - np.maximum(lo_a, lo_b), np.float32(0)))
    return inter / (area_a + area_b - inter)


def _tf_nms_v5(boxes, scores, max_out, iou_thresh, score_thresh, soft_sigma):
    """TF's lazy heap algorithm (NonMaxSuppressionV5, CPU kernel), the oracle of the eager version."""
    scale = np.float32(-0.5 / soft_sigma) if soft_sigma > 0 else np.float32(0)
    heap = [(-scores[i], i, 0) for i in range(len(scores)) if scores[i] > score_thresh]
    heapq.heapify(heap)
    selected, selected_scores = [], []
    while len(selected) < max_out and heap:
        negative, index, begin = heapq.heappop(heap)
        score = original = -negative
        hard_suppressed = False
        for j in range(len(selected) - 1, begin - 1, -1):
            iou = _iou_f32(boxes[index], boxes[selected[j]])
            if soft_sigma <= 0 and iou > iou_thresh:
                hard_suppressed = True
                break
            score = score * np.exp(scale * iou * iou, dtype=np.float32)
            if score <= score_thresh:
                break
        if hard_suppressed:
            continue
        if score == original:
            selected.append(index)
            selected_scores.append(score)
        elif score > score_thresh:
            heapq.heappush(heap, (-score, index, len(selected)))
    return selected, selected_scores


def _random_problems(seed: int, batch: int, count: int):
    """Clustered boxes (many overlaps, some inverted, every tenth empty) with tied scores."""
    rng = np.random.default_rng(seed)
    centres = rng.uniform(0, 100, (batch, 4, 2))[:, rng.integers(0, 4, count)]
    sizes = rng.uniform(-2, 30, (batch, count, 2))
    sizes[:, ::10, 0] = 0  # empty boxes: IoU 0 with everything
    jitter = rng.normal(0, 3, (batch, count, 2))
    lo = centres + jitter - sizes / 2
    boxes = np.concatenate([lo, lo + sizes], axis=-1).astype(np.float32)
    scores = np.round(rng.uniform(0, 1, (batch, count)), 2).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("nms", [GAUSSIAN, HARD, NmsConfig(method="hard", iou_thresh=0.3, score_thresh=0.2),
                                 NmsConfig(method="gaussian", sigma=0.9, score_thresh=0.1)])
def test_equals_tf_heap_algorithm(nms):
    boxes, scores = _random_problems(seed=7, batch=6, count=80)
    max_det = 30
    indices, kept_scores, num_valid = non_max_suppression(torch.from_numpy(boxes), torch.from_numpy(scores), nms, max_det)
    resolved = nms.resolved()
    soft_sigma = resolved.sigma / 2 if resolved.method == "gaussian" else 0.0
    for row in range(boxes.shape[0]):
        expected, expected_scores = _tf_nms_v5(
            boxes[row], scores[row], max_det, np.float32(resolved.iou_thresh), np.float32(resolved.score_thresh), soft_sigma
        )
        valid = len(expected)
        assert num_valid[row] == valid
        assert indices[row, :valid].tolist() == expected
        np.testing.assert_allclose(kept_scores[row, :valid].numpy(), expected_scores, rtol=1e-6, atol=0)
        assert not indices[row, valid:].any() and not kept_scores[row, valid:].any()


def _hand_made():
    """A (class 0, 0.9); B inside A, IoU 0.8, class 0, 0.8; C the same box as B but class 1, 0.7."""
    boxes = torch.tensor([[[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 8.0], [0.0, 0.0, 10.0, 8.0]]])
    scores = torch.tensor([[0.9, 0.8, 0.7]])
    classes = torch.tensor([[0, 0, 1]])
    return boxes, scores, classes


def test_class_aware_hard_keeps_other_classes():
    boxes, scores, classes = _hand_made()
    aware = non_max_suppression(boxes, scores, HARD, max_det=4, classes=classes)
    assert aware[0].tolist() == [[0, 2, 0, 0]] and aware[2].tolist() == [2]
    torch.testing.assert_close(aware[1], torch.tensor([[0.9, 0.7, 0.0, 0.0]]))
    agnostic = non_max_suppression(boxes, scores, HARD, max_det=4)
    assert agnostic[0].tolist() == [[0, 0, 0, 0]] and agnostic[2].tolist() == [1]


def test_class_aware_gaussian_decays_within_class_only():
    boxes, scores, classes = _hand_made()
    weight_a = math.exp(-2 * 0.8**2)  # B and C against A: IoU 0.8, weight exp(-iou^2 / 0.5)
    weight_b = math.exp(-2 * 1.0**2)  # C against B: the same box
    aware = non_max_suppression(boxes, scores, GAUSSIAN, max_det=3, classes=classes)
    assert aware[0].tolist() == [[0, 2, 1]]
    torch.testing.assert_close(aware[1], torch.tensor([[0.9, 0.7, 0.8 * weight_a]]))
    agnostic = non_max_suppression(boxes, scores, GAUSSIAN, max_det=3)
    assert agnostic[0].tolist() == [[0, 1, 2]]
    torch.testing.assert_close(agnostic[1], torch.tensor([[0.9, 0.8 * weight_a, 0.7 * weight_a * weight_b]]))


def test_threshold_is_strict_and_rows_pad_with_zeros():
    boxes = torch.tensor([[[0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0], [9.0, 9.0, 10.0, 10.0]]]).repeat(2, 1, 1)
    scores = torch.tensor([[0.5, 0.2, 0.2], [0.1, 0.1, 0.1]])
    indices, kept, num_valid = non_max_suppression(boxes, scores, NmsConfig(method="hard", score_thresh=0.2), 5)
    assert num_valid.tolist() == [1, 0] and num_valid.dtype == torch.int32
    assert indices.tolist() == [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]
    assert kept.tolist() == [[0.5, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_equal_scores_go_to_the_lower_index():
    boxes = torch.tensor([[[0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0], [0.0, 0.0, 4.0, 4.0]]])
    indices, _, num_valid = non_max_suppression(boxes, torch.full((1, 3), 0.5), HARD, 3)
    assert indices[0, :1].tolist() == [0] and num_valid.tolist() == [1]


@pytest.mark.parametrize("class_aware", [False, True], ids=["global", "class_aware"])
@pytest.mark.parametrize("nms", [GAUSSIAN, HARD, NmsConfig(method="hard", iou_thresh=0.3, score_thresh=0.2),
                                 NmsConfig(method="gaussian", sigma=0.9, score_thresh=0.4)],
                         ids=["gaussian", "hard", "hard_0.3", "gaussian_floor_0.4"])
def test_host_nms_equals_the_static_loop(nms, class_aware):
    """The CPU engines' NMS (numpy, live candidates only, early exit) returns the static loop's indices,
    scores and counts bit for bit, at the engine's size and on small problems whose candidates run out;
    boxes with NaN corners count as empty in both."""
    for seed, batch, count, max_det in ((11, 3, 4096, 100), (5, 4, 60, 60)):
        boxes, scores = _random_problems(seed=seed, batch=batch, count=count)
        boxes[:, 3::17] = np.nan
        classes = np.random.default_rng(3).integers(0, 4, scores.shape) if class_aware else None
        expected = non_max_suppression(torch.from_numpy(boxes), torch.from_numpy(scores), nms, max_det,
                                       classes=torch.from_numpy(classes) if class_aware else None)
        got = host_non_max_suppression(boxes, scores, nms, max_det, classes=classes)
        assert got[2].dtype == np.int32 and got[0].shape == got[1].shape == (batch, max_det)
        for ours, reference in zip(got, expected):
            np.testing.assert_array_equal(ours, reference.numpy())
        if count == 60 and nms is not GAUSSIAN:  # the default floor keeps all 60 (hard's is -inf; IoU culls)
            assert expected[2].max() < max_det  # candidates ran out before max_det: the early exit is used


@pytest.mark.gpu
@pytest.mark.parametrize("class_aware", [False, True], ids=["global", "class_aware"])
@pytest.mark.parametrize("nms", [GAUSSIAN, HARD, NmsConfig(method="hard", iou_thresh=0.3, score_thresh=0.2)],
                         ids=["gaussian", "hard", "hard_0.3"])
def test_cuda_kernel_equals_the_cpu_path(nms, class_aware):
    """On CUDA the NMS is one Triton kernel; at the engine's size (4096 candidates, 100 detections, tied
    scores, empty and inverted boxes) it selects the same boxes as the tested CPU formulation."""
    boxes, scores = _random_problems(seed=11, batch=5, count=4096)
    classes = torch.from_numpy(np.random.default_rng(3).integers(0, 4, scores.shape)) if class_aware else None
    boxes, scores = torch.from_numpy(boxes), torch.from_numpy(scores)
    expected = non_max_suppression(boxes, scores, nms, 100, classes=classes)
    on_cuda = non_max_suppression(boxes.cuda(), scores.cuda(), nms, 100,
                                  classes=classes.cuda() if classes is not None else None)
    indices, kept_scores, num_valid = (t.cpu() for t in on_cuda)
    assert num_valid.tolist() == expected[2].tolist() and expected[2].min() > 10
    assert indices.tolist() == expected[0].tolist()
    # Soft-NMS scores are products of up to 100 exp() factors: CPU and CUDA exp may each differ by an ulp.
    torch.testing.assert_close(kept_scores, expected[1], rtol=1e-5, atol=0)
