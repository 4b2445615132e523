"""Synthetic H.264 clips: scene-kit objects moving over a photograph, with exact per-frame ground truth.

Each object moves in its own horizontal lane (bouncing off the sides, bobbing within the lane), so objects
never overlap and every box stays fully visible. Ground truth is a COCO dataset with one image per frame
(`frame_index` set), for the accuracy test and `demo`.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import av
import numpy as np

from effdet_video.training.scene_kit import SceneKit
from effdet_video.training.synth import Scene, background, coco_annotations, coco_categories, paste, resized_sprite

MIN_OBJECT_FRACTION = 0.2
MAX_OBJECT_FRACTION = 0.4


@dataclasses.dataclass
class _Mover:
    image: np.ndarray
    alpha: np.ndarray
    class_id: int
    x: float
    y: float
    vx: float
    y_range: tuple[int, int]
    phase: float


def _movers(kit: SceneKit, rng: np.random.Generator, size: tuple[int, int], lanes: int) -> list[_Mover]:
    height, width = size
    lane_h = height // lanes
    movers = []
    for lane in range(lanes):
        class_index = lane % len(kit.sprites) if lanes <= len(kit.sprites) else int(rng.integers(len(kit.sprites)))
        long_side = int(min(lane_h * 0.95, min(size) * rng.uniform(MIN_OBJECT_FRACTION, MAX_OBJECT_FRACTION)))
        image, alpha = resized_sprite(kit.sprites[class_index], long_side, bool(rng.random() < 0.5))
        h, w = alpha.shape
        y_range = (lane * lane_h, lane * lane_h + lane_h - h)
        speed = rng.uniform(0.01, 0.025) * width * rng.choice([-1, 1])
        movers.append(_Mover(image, alpha, class_index + 1, float(rng.uniform(0, width - w)),
                             float(rng.uniform(*y_range)), speed, y_range, float(rng.uniform(0, 2 * np.pi))))
    return movers


def _step(mover: _Mover, width: int, frame: int) -> tuple[int, int]:
    """Advance one frame: bounce off the left/right edges, bob within the lane."""
    w = mover.alpha.shape[1]
    mover.x += mover.vx
    if mover.x < 0 or mover.x > width - w:
        mover.vx = -mover.vx
        mover.x = float(np.clip(mover.x, 0, width - w))
    lo, hi = mover.y_range
    y = lo + (hi - lo) * 0.5 * (1 + np.sin(mover.phase + frame * 0.08))
    return int(round(mover.x)), int(round(y))


def write_clip(kit: SceneKit, path: Path, seed: int, num_frames: int = 60, size: tuple[int, int] = (480, 640),
               fps: int = 25, lanes: int = 4) -> dict:
    """Encode an H.264 clip of objects moving over one background; returns its per-frame ground truth as
    a COCO dataset (image i+1 is frame i, with `frame_index`), also written to `<path>.gt.json`."""
    rng = np.random.default_rng(seed)
    backdrop = background(kit, rng, size)
    movers = _movers(kit, rng, size, lanes)
    images, annotations = [], []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index in range(num_frames):
            canvas = backdrop.copy()
            boxes = [paste(canvas, m.image, m.alpha, *_step(m, size[1], index)) for m in movers]
            scene = Scene(canvas, np.array(boxes, np.float32), np.array([m.class_id for m in movers], np.int64))
            images.append({"id": index + 1, "frame_index": index, "file_name": f"{path.name}#{index}",
                           "height": size[0], "width": size[1]})
            annotations += coco_annotations(scene, index + 1, len(annotations) + 1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(canvas, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    truth = {"images": images, "annotations": annotations, "categories": coco_categories(kit.class_names)}
    Path(f"{path}.gt.json").write_text(json.dumps(truth))
    return truth
