"""COCO-format detection datasets for training, with AutoML's training augmentation (tf2/dataloader.py).

Augmentation, in AutoML's order: horizontal flip (p = 0.5), then scale jitter: the image is resized to fit
`random_scale * image_size` (random_scale uniform in [jitter_min, jitter_max]), a random window of the
model's size is cropped from it, the rest padded at the bottom/right; boxes follow, are clipped, and those
left empty are dropped. With jitter (1, 1) and no flip this is exactly inference's letterbox.

Class ids: the model's class k (1-based) is COCO category_id k, as AutoML's datasets use them.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from effdet_video.configs import ModelConfig
from effdet_video.errors import UserError
from effdet_video.ops.anchors import generate_anchors
from effdet_video.training.targets import label_anchors

AUTOML_JITTER = (0.1, 2.0)  # AutoML's default jitter_min, jitter_max


@dataclasses.dataclass(frozen=True)
class Annotated:
    path: Path
    boxes: np.ndarray      # float32 [n, 4] x0, y0, x1, y1 pixels
    class_ids: np.ndarray  # int64 [n], 1-based


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"dataset file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"dataset file {path} is not JSON: {error}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list) \
            or not isinstance(data.get("annotations"), list):
        raise UserError(f"dataset file {path} is not COCO format (needs 'images' and 'annotations' lists)")
    return data


def read_coco_dataset(json_path: Path, image_dir: Path, num_classes: int) -> list[Annotated]:
    """The images of a COCO-format json with their non-crowd boxes; every category id must be a class of
    the model (1..num_classes) and every image file must exist."""
    data = _load_json(json_path)
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        if ann.get("iscrowd", 0):
            continue
        category = int(ann["category_id"])
        if not 1 <= category <= num_classes:
            raise UserError(f"{json_path}: category_id {category} is outside the model's classes 1..{num_classes}"
                            f" (the model needs at least {category} classes)")
        by_image.setdefault(int(ann["image_id"]), []).append(ann)
    samples = []
    for image in data["images"]:
        path = Path(image_dir) / image["file_name"]
        if not path.is_file():
            raise UserError(f"image {path} listed in {json_path} does not exist (check the images folder, which "
                            "the file names are relative to)")
        anns = [a for a in by_image.get(int(image["id"]), []) if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        boxes = np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)], np.float32)
        samples.append(Annotated(path, boxes.reshape(-1, 4), np.array([a["category_id"] for a in anns], np.int64)))
    if not samples:
        raise UserError(f"dataset {json_path} has no images")
    return samples


def read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"cannot read image {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@dataclasses.dataclass
class Augmented:
    image: np.ndarray  # uint8 [H, W, 3], content top-left, padding zero
    valid_hw: tuple[int, int]
    boxes: np.ndarray  # float32 [n, 4] x0, y0, x1, y1 in network pixels


def augment(image: np.ndarray, boxes: np.ndarray, image_size: tuple[int, int], rng: np.random.Generator,
            flip: bool, jitter: tuple[float, float]) -> tuple[Augmented, np.ndarray]:
    """AutoML's flip + resize-and-crop. Returns the result and the mask of the boxes kept."""
    height, width = image.shape[:2]
    boxes = boxes.copy()
    if flip and rng.random() < 0.5:
        image = image[:, ::-1]
        boxes[:, [0, 2]] = width - boxes[:, [2, 0]]
    random_scale = rng.uniform(*jitter)
    scale = min(random_scale * image_size[0] / height, random_scale * image_size[1] / width)
    scaled_h, scaled_w = max(1, int(height * scale)), max(1, int(width * scale))
    offset_y = int(max(0, scaled_h - image_size[0]) * rng.random())
    offset_x = int(max(0, scaled_w - image_size[1]) * rng.random())
    resized = cv2.resize(np.ascontiguousarray(image), (scaled_w, scaled_h), interpolation=cv2.INTER_LINEAR)
    window = resized[offset_y:offset_y + image_size[0], offset_x:offset_x + image_size[1]]
    out = np.zeros((*image_size, 3), np.uint8)
    out[:window.shape[0], :window.shape[1]] = window
    boxes = boxes * scale - np.array([offset_x, offset_y, offset_x, offset_y], np.float32)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, window.shape[1])
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, window.shape[0])
    kept = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    return Augmented(out, window.shape[:2], boxes[kept].astype(np.float32)), kept


class DetectionDataset(Dataset):
    """Items: (image uint8 [H, W, 3], valid_hw int32 [2], cls_targets int64 [N], box_targets float32 [N, 4]),
    targets in anchor order. Each item draws its augmentation from (seed, epoch, index), so runs repeat."""

    def __init__(self, samples: list[Annotated], config: ModelConfig, train: bool,
                 jitter: tuple[float, float] = AUTOML_JITTER, seed: int = 0) -> None:
        self.samples = samples
        self.image_size = config.image_size
        self.anchors = generate_anchors(config)
        self.train = train
        self.jitter = jitter if train else (1.0, 1.0)
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        augmented, kept = augment(read_image(sample.path), sample.boxes, self.image_size, rng, self.train,
                                  self.jitter)
        boxes_yxyx = torch.from_numpy(augmented.boxes[:, [1, 0, 3, 2]].copy())
        targets = label_anchors(boxes_yxyx, torch.from_numpy(sample.class_ids[kept]), self.anchors)
        return (torch.from_numpy(augmented.image), torch.tensor(augmented.valid_hw, dtype=torch.int32),
                targets.cls_targets, targets.box_targets)
