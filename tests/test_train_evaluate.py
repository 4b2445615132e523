"""The COCO-style AP@0.5 evaluator: a hand-computed case, and agreement with pycocotools when installed."""
import numpy as np
import pytest

from effdet_video.training.evaluate import mean_average_precision


def _gt(boxes_by_image):
    images = [{"id": i, "height": 100, "width": 100} for i in boxes_by_image]
    anns = [{"id": k + 1, "image_id": i, "category_id": c, "bbox": b, "area": b[2] * b[3], "iscrowd": 0}
            for k, (i, c, b) in enumerate((i, c, b) for i, bs in boxes_by_image.items() for c, b in bs)]
    return {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def test_hand_computed_average_precision():
    gt = _gt({1: [(1, [0, 0, 10, 10])], 2: [(1, [50, 50, 20, 20])]})
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},   # TP
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.8},   # duplicate: FP
            {"image_id": 2, "category_id": 1, "bbox": [52, 50, 20, 20], "score": 0.7},  # IoU 0.82: TP
            {"image_id": 2, "category_id": 2, "bbox": [50, 50, 20, 20], "score": 0.99}]  # class without GT
    # precision (1, 1/2, 2/3) at recall (.5, .5, 1) -> monotone (1, 2/3, 2/3): 51 points at 1, 50 at 2/3
    result = mean_average_precision(gt, dets)
    assert result["per_class"] == {1: pytest.approx((51 + 50 * 2 / 3) / 101)}
    assert result["map"] == pytest.approx(0.834983498)


def test_missed_class_scores_zero_and_iou_below_half_is_a_miss():
    gt = _gt({1: [(1, [0, 0, 10, 10]), (2, [40, 40, 10, 10])]})
    dets = [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.5},
            {"image_id": 1, "category_id": 2, "bbox": [45, 40, 10, 10], "score": 0.5}]  # IoU 1/3
    assert mean_average_precision(gt, dets) == {"map": 0.5, "per_class": {1: 1.0, 2: 0.0}}


def test_agrees_with_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)
    boxes = {i: [(int(rng.integers(1, 3)), rng.uniform(0, 60, 2).tolist() + rng.uniform(10, 40, 2).tolist())
                 for _ in range(3)] for i in range(1, 21)}
    gt = _gt(boxes)
    dets = []
    for ann in gt["annotations"]:
        if rng.random() < 0.85:
            x, y, w, h = ann["bbox"]
            jitter = rng.normal(0, 3, 4)
            dets.append({"image_id": ann["image_id"], "category_id": ann["category_id"], "score": float(rng.random()),
                         "bbox": [x + jitter[0], y + jitter[1], w + jitter[2], h + jitter[3]]})
    for i in range(1, 21):
        dets.append({"image_id": i, "category_id": 1, "score": float(rng.random()), "bbox": [70.0, 70.0, 20.0, 20.0]})
    coco = COCO()
    coco.dataset = gt
    coco.createIndex()
    evaluator = COCOeval(coco, coco.loadRes(dets), "bbox")
    evaluator.params.iouThrs = np.array([0.5])
    evaluator.evaluate()
    evaluator.accumulate()
    precision = evaluator.eval["precision"][0, :, :, 0, -1]  # [recall, class] at area all, maxDets 100
    expected = float(np.mean(precision[precision > -1]))
    assert mean_average_precision(gt, dets)["map"] == pytest.approx(expected, abs=1e-9)
