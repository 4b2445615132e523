"""Deterministic synthetic detection data: scene-kit objects pasted on photographs, with exact boxes.

A box is the tight pixel extent of the pasted object's alpha (>= 0.5), so ground truth is exact by
construction. Stills export as a COCO-format dataset (for `train`); `synth_clip` makes videos of them.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import json
from pathlib import Path

import cv2
import numpy as np

from effdet_video.demo.scene_kit import SceneKit, Sprite

MIN_OBJECT_FRACTION = 0.18  # object's long side, as a fraction of the frame's short side
MAX_OBJECT_FRACTION = 0.45
PLACEMENT_TRIES = 30


@dataclasses.dataclass
class Scene:
    image: np.ndarray     # uint8 [H, W, 3] RGB
    boxes: np.ndarray     # float32 [n, 4] x0, y0, x1, y1 in pixels
    class_ids: np.ndarray  # int64 [n], 1-based index into the kit's class names


def _alpha(shape: str, height: int, width: int) -> np.ndarray:
    """Object alpha in [0, 1] of the given size; an ellipse touching all four edges, or full."""
    if shape == "rectangle":
        return np.ones((height, width), np.float32)
    y = (np.arange(height) + 0.5) / height * 2 - 1
    x = (np.arange(width) + 0.5) / width * 2 - 1
    radius = np.sqrt(y[:, None] ** 2 + x[None, :] ** 2)
    edge = 1.5 / max(height, width)  # about one pixel of anti-aliasing
    return np.clip((1 - radius) / edge + 0.5, 0, 1).astype(np.float32)


def resized_sprite(sprite: Sprite, long_side: int, flip: bool) -> tuple[np.ndarray, np.ndarray]:
    h, w = sprite.image.shape[:2]
    scale = long_side / max(h, w)
    size = (max(8, round(w * scale)), max(8, round(h * scale)))
    image = cv2.resize(sprite.image, size, interpolation=cv2.INTER_AREA)
    if flip:
        image = image[:, ::-1]
    return image, _alpha(sprite.mask_shape, size[1], size[0])


def paste(canvas: np.ndarray, image: np.ndarray, alpha: np.ndarray, x: int, y: int) -> np.ndarray:
    """Blend the object into canvas (in place) at top-left (x, y); returns its exact x0, y0, x1, y1."""
    h, w = alpha.shape
    region = canvas[y:y + h, x:x + w].astype(np.float32)
    a = alpha[..., None]
    canvas[y:y + h, x:x + w] = np.round(image * a + region * (1 - a)).astype(np.uint8)
    rows = np.flatnonzero((alpha >= 0.5).any(axis=1))
    cols = np.flatnonzero((alpha >= 0.5).any(axis=0))
    return np.array([x + cols[0], y + rows[0], x + cols[-1] + 1, y + rows[-1] + 1], np.float32)


def background(kit: SceneKit, rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    """A random crop of a random kit background, scaled to cover (height, width), maybe flipped."""
    height, width = size
    photo = kit.backgrounds[rng.integers(len(kit.backgrounds))]
    ph, pw = photo.shape[:2]
    zoom = rng.uniform(1.0, 1.6)
    crop_h = min(ph, int(ph / zoom))
    crop_w = min(pw, int(crop_h * width / height))
    crop_h = min(crop_h, int(crop_w * height / width))
    y = rng.integers(ph - crop_h + 1)
    x = rng.integers(pw - crop_w + 1)
    image = cv2.resize(photo[y:y + crop_h, x:x + crop_w], (width, height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(image[:, ::-1] if rng.random() < 0.5 else image)


def _overlaps(box: np.ndarray, others: list[np.ndarray]) -> bool:
    return any(box[0] < o[2] and o[0] < box[2] and box[1] < o[3] and o[1] < box[3] for o in others)


def make_scene(kit: SceneKit, rng: np.random.Generator, size: tuple[int, int], max_objects: int = 4) -> Scene:
    """One still: 1..max_objects non-overlapping objects of random class, scale, position and flip."""
    canvas = background(kit, rng, size)
    boxes: list[np.ndarray] = []
    class_ids: list[int] = []
    short = min(size)
    for _ in range(rng.integers(1, max_objects + 1)):
        class_index = int(rng.integers(len(kit.sprites)))
        long_side = int(short * rng.uniform(MIN_OBJECT_FRACTION, MAX_OBJECT_FRACTION))
        image, alpha = resized_sprite(kit.sprites[class_index], long_side, bool(rng.random() < 0.5))
        h, w = alpha.shape
        for _ in range(PLACEMENT_TRIES):
            x, y = int(rng.integers(size[1] - w + 1)), int(rng.integers(size[0] - h + 1))
            if not _overlaps(np.array([x, y, x + w, y + h]), boxes):
                boxes.append(paste(canvas, image, alpha, x, y))
                class_ids.append(class_index + 1)
                break
    return Scene(canvas, np.array(boxes, np.float32).reshape(-1, 4), np.array(class_ids, np.int64))


def coco_categories(class_names: tuple[str, ...]) -> list[dict]:
    return [{"id": i + 1, "name": name} for i, name in enumerate(class_names)]


def coco_annotations(scene: Scene, image_id: int, first_id: int) -> list[dict]:
    return [{"id": first_id + k, "image_id": image_id, "category_id": int(c), "iscrowd": 0,
             "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
             "area": float((b[2] - b[0]) * (b[3] - b[1]))}
            for k, (b, c) in enumerate(zip(scene.boxes, scene.class_ids))]


def _write_still(kit: SceneKit, image_dir: Path, seed: int, size: tuple[int, int], image_id: int) -> Scene:
    """Image `image_id` of a dataset: its own random stream, so the result never depends on thread count."""
    scene = make_scene(kit, np.random.default_rng((seed, image_id)), size)
    cv2.imwrite(str(image_dir / f"{image_id:06d}.jpg"), cv2.cvtColor(scene.image, cv2.COLOR_RGB2BGR),
                [cv2.IMWRITE_JPEG_QUALITY, 92])
    return scene


def write_coco_dataset(kit: SceneKit, out_dir: Path, num_images: int, seed: int,
                       size: tuple[int, int] = (480, 640), workers: int = 4) -> Path:
    """Write `num_images` stills (JPEG) and `annotations.json` (COCO format) under out_dir; returns the json."""
    image_dir = out_dir / "images"
    image_dir.mkdir(parents=True, exist_ok=True)
    write = functools.partial(_write_still, kit, image_dir, seed, size)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:  # OpenCV releases the GIL
        scenes = list(pool.map(write, range(1, num_images + 1)))
    images, annotations = [], []
    for image_id, scene in enumerate(scenes, start=1):
        images.append({"id": image_id, "file_name": f"{image_id:06d}.jpg", "height": size[0], "width": size[1]})
        annotations += coco_annotations(scene, image_id, len(annotations) + 1)
    path = out_dir / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": coco_categories(kit.class_names)}))
    return path
