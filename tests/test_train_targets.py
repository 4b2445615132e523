"""AutoML's anchor labelling and loss, on hand-made cases."""
import math

import torch
import torch.nn.functional as F

from effdet_video.ops.boxes import decode_boxes
from effdet_video.training import losses
from effdet_video.training.targets import label_anchors, match_anchors

ANCHORS = torch.tensor([
    [0.0, 0.0, 10.0, 10.0],    # IoU 1 with box 0
    [0.0, 0.0, 10.0, 16.0],    # IoU 0.625 with box 0: positive
    [20.0, 20.0, 30.0, 30.0],  # IoU 0.25 with box 1: below 0.5, but box 1's best anchor -> forced
    [50.0, 50.0, 60.0, 60.0],  # no overlap: negative
])
BOXES = torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 25.0, 25.0]])


def test_matching_thresholds_and_force_match():
    assert match_anchors(BOXES, ANCHORS).tolist() == [0, 0, 1, -1]


def test_force_match_first_box_wins_a_shared_best_anchor():
    boxes = torch.tensor([[20.0, 20.0, 24.0, 24.0], [26.0, 26.0, 30.0, 30.0]])  # both best at anchor 2
    assert match_anchors(boxes, ANCHORS).tolist() == [-1, -1, 0, -1]


def test_targets_are_zero_based_classes_and_invertible_codes():
    targets = label_anchors(BOXES, torch.tensor([3, 1]), ANCHORS)
    assert targets.cls_targets.tolist() == [2, 2, 0, -1]
    assert targets.num_positives == 3
    assert torch.equal(targets.box_targets[3], torch.zeros(4))
    decoded = decode_boxes(targets.box_targets[:3], ANCHORS[:3])
    assert torch.allclose(decoded, BOXES[[0, 0, 1]], atol=1e-5)
    assert torch.allclose(targets.box_targets[1], torch.tensor([0.0, -3 / 16, 0.0, math.log(10 / 16)]))


def test_no_boxes_means_all_background():
    targets = label_anchors(torch.zeros(0, 4), torch.zeros(0, dtype=torch.long), ANCHORS)
    assert targets.cls_targets.tolist() == [-1, -1, -1, -1] and targets.num_positives == 0


def test_focal_loss_matches_formula():
    logits = torch.tensor([[2.0, -1.0]])
    one_hot = torch.tensor([[1.0, 0.0]])
    p = torch.sigmoid(logits)
    expected = (0.25 * (1 - p[0, 0]) ** 1.5 * -torch.log(p[0, 0])
                + 0.75 * p[0, 1] ** 1.5 * -torch.log(1 - p[0, 1])) / 3.0
    assert torch.allclose(losses.focal_loss(logits, one_hot, torch.tensor(3.0)), expected)


def test_detection_loss_normalises_by_positives_and_masks_negatives():
    # one level, 1x1 feature map, 2 anchors, 2 classes; anchor 0 positive (class 1), anchor 1 background
    cls_out = [torch.tensor([0.5, -0.5, -2.0, 1.0]).view(1, 4, 1, 1)]
    box_out = [torch.tensor([0.3, 0.0, 0.0, 0.0, 9.0, 9.0, 9.0, 9.0]).view(1, 8, 1, 1)]
    cls_targets = torch.tensor([[1, -1]])
    box_targets = torch.tensor([[[0.1, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]])
    loss = losses.detection_loss(cls_out, box_out, cls_targets, box_targets, num_classes=2)
    huber = F.huber_loss(torch.tensor(0.3), torch.tensor(0.1), delta=0.1)  # 0.1 * (0.2 - 0.05) = 0.015
    assert torch.allclose(loss.box, huber / (4 * 2.0))
    one_hot = torch.tensor([[0.0, 1.0], [0.0, 0.0]])
    assert torch.allclose(loss.cls, losses.focal_loss(cls_out[0].view(2, 2), one_hot, torch.tensor(2.0)))
    assert torch.allclose(loss.total, loss.cls + 50 * loss.box)
