"""The synthetic data generator: deterministic, exact boxes, COCO export readable by the training loader."""
import json

import numpy as np
import pytest

from effdet_video.demo import synth, synth_clip
from effdet_video.demo.scene_kit import load_scene_kit
from effdet_video.errors import UserError
from effdet_video.training import data


@pytest.fixture(scope="module")
def kit():
    return load_scene_kit()


def test_scene_is_deterministic_and_boxes_are_the_pasted_extent(kit):
    a = synth.make_scene(kit, np.random.default_rng(4), (240, 320))
    b = synth.make_scene(kit, np.random.default_rng(4), (240, 320))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.boxes, b.boxes)
    assert kit.class_names == ("cat", "cup", "rocket", "face")
    canvas = np.zeros((50, 60, 3), np.uint8)
    alpha = synth._alpha("ellipse", 20, 30)
    box = synth.paste(canvas, np.full((20, 30, 3), 255, np.uint8), alpha, x=7, y=11)
    assert box.tolist() == [7, 11, 37, 31]  # an ellipse touching all four edges of its 30x20 patch
    ys, xs = np.nonzero(canvas[..., 0] >= 128)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (7, 11, 37, 31)


def test_coco_dataset_round_trip(kit, tmp_path):
    path = synth.write_coco_dataset(kit, tmp_path, num_images=3, seed=9, size=(120, 160), workers=2)
    coco = json.loads(path.read_text())
    assert [c["name"] for c in coco["categories"]] == list(kit.class_names)
    samples = data.read_coco_dataset(path, tmp_path / "images", num_classes=4)
    assert len(samples) == 3
    assert sum(len(s.boxes) for s in samples) == len(coco["annotations"])
    again = synth.write_coco_dataset(kit, tmp_path / "again", num_images=3, seed=9, size=(120, 160), workers=1)
    assert json.loads(again.read_text()) == coco  # thread count does not change the data


def test_clip_ground_truth_per_frame(kit, tmp_path):
    truth = synth_clip.write_clip(kit, tmp_path / "c.mp4", seed=3, num_frames=6, size=(240, 320))
    assert len(truth["images"]) == 6 and len(truth["annotations"]) == 6 * 4
    assert sorted({a["category_id"] for a in truth["annotations"]}) == [1, 2, 3, 4]
    assert json.loads((tmp_path / "c.mp4.gt.json").read_text()) == truth
    for ann in truth["annotations"]:
        x, y, w, h = ann["bbox"]
        assert 0 <= x and x + w <= 320 and 0 <= y and y + h <= 240


def test_dataset_errors_are_user_errors(kit, tmp_path):
    path = synth.write_coco_dataset(kit, tmp_path, num_images=2, seed=1, size=(120, 160))
    with pytest.raises(UserError, match="category_id .* outside"):
        data.read_coco_dataset(path, tmp_path / "images", num_classes=1)
    with pytest.raises(UserError, match="does not exist"):
        data.read_coco_dataset(path, tmp_path, num_classes=4)
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(UserError, match="not JSON"):
        data.read_coco_dataset(tmp_path / "bad.json", tmp_path, num_classes=4)


def test_augment_without_jitter_is_the_inference_letterbox():
    image = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array([[20, 10, 60, 50]], np.float32)
    out, kept = data.augment(image, boxes, (64, 64), np.random.default_rng(0), flip=False, jitter=(1.0, 1.0))
    assert out.valid_hw == (32, 64) and kept.tolist() == [True]
    np.testing.assert_allclose(out.boxes, [[6.4, 3.2, 19.2, 16.0]], rtol=1e-6)


def test_augment_flip_mirrors_boxes_and_crop_clips_or_drops_boxes():
    image = np.zeros((100, 100, 3), np.uint8)
    boxes = np.array([[10, 10, 30, 30], [80, 80, 90, 90]], np.float32)
    flips = [data.augment(image, boxes, (100, 100), np.random.default_rng(s), flip=True, jitter=(1, 1))[0]
             for s in range(8)]
    assert {tuple(f.boxes[0]) for f in flips} == {(10, 10, 30, 30), (70, 10, 90, 30)}
    for seed in range(8):  # x2 scale, a random 50x50 window of the 200x200 result: boxes clipped to it
        out, kept = data.augment(image, boxes, (50, 50), np.random.default_rng(seed), flip=False, jitter=(2, 2))
        assert out.valid_hw == (50, 50) and len(out.boxes) == kept.sum() <= 1
        assert ((out.boxes >= 0) & (out.boxes <= 50)).all()
        assert (out.boxes[:, 2:] > out.boxes[:, :2]).all()
