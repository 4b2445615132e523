"""Synthetic H.264 clips: scene-kit objects moving over a photograph, with exact per-frame ground truth.

Two kinds of scene, ground truth as a COCO dataset with one image per frame (`frame_index` and `pts` in
seconds set) and the object's identity on each annotation (`track_id`):
- `write_clip`: each object moves in its own horizontal lane (bouncing off the sides, bobbing within the
  lane), so objects never overlap and every box stays fully visible (the accuracy test and `demo`);
- `write_tracking_clip`: a scene for tracking, defined in continuous time so that it can be sampled at a
  constant or a variable frame rate with the same motion: objects that cross, one that passes behind
  another for a while, entries and exits across the frame's edges, speed changes (see `tracking_scene`).
"""
from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path
from typing import Callable, Sequence

import av
import numpy as np

from effdet_video.demo.scene_kit import SceneKit
from effdet_video.demo.synth import Scene, background, coco_annotations, coco_categories, paste, resized_sprite

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


def _encode_clip(path: Path, size: tuple[int, int], rate: int, time_base: Fraction, pts: Sequence[int],
                 render: Callable[[int], tuple[np.ndarray, list[dict]]], class_names: tuple[str, ...]) -> dict:
    """Encode frame i = render(i) (an RGB image and its annotations without ids) at pts[i]; returns the
    ground truth (image i+1 is frame i), also written to `<path>.gt.json`."""
    images, annotations = [], []
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = size[1], size[0], "yuv420p"
        stream.time_base = stream.codec_context.time_base = time_base
        stream.options = {"crf": "18", "preset": "veryfast"}
        for index, frame_pts in enumerate(pts):
            canvas, frame_annotations = render(index)
            images.append({"id": index + 1, "frame_index": index, "pts": float(frame_pts * time_base),
                           "file_name": f"{path.name}#{index}", "height": size[0], "width": size[1]})
            for annotation in frame_annotations:
                annotations.append({**annotation, "id": len(annotations) + 1, "image_id": index + 1})
            picture = av.VideoFrame.from_ndarray(canvas, format="rgb24")
            picture.pts, picture.time_base = frame_pts, time_base
            for packet in stream.encode(picture):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    truth = {"images": images, "annotations": annotations, "categories": coco_categories(class_names)}
    Path(f"{path}.gt.json").write_text(json.dumps(truth))
    return truth


def write_clip(kit: SceneKit, path: Path, seed: int, num_frames: int = 60, size: tuple[int, int] = (480, 640),
               fps: int = 25, lanes: int = 4) -> dict:
    """Encode an H.264 clip of objects moving in lanes over one background; returns its per-frame ground
    truth as a COCO dataset (image i+1 is frame i), also written to `<path>.gt.json`. Lane k's object
    is track k + 1."""
    rng = np.random.default_rng(seed)
    backdrop = background(kit, rng, size)
    movers = _movers(kit, rng, size, lanes)

    def render(index: int) -> tuple[np.ndarray, list[dict]]:
        canvas = backdrop.copy()
        boxes = [paste(canvas, m.image, m.alpha, *_step(m, size[1], index)) for m in movers]
        scene = Scene(canvas, np.array(boxes, np.float32), np.array([m.class_id for m in movers], np.int64))
        annotations = coco_annotations(scene, 0, 0)
        return canvas, [{**a, "track_id": lane + 1} for lane, a in enumerate(annotations)]

    return _encode_clip(path, size, fps, Fraction(1, fps), range(num_frames), render, kit.class_names)


# --- tracking scenes ---

TRACKING_DURATION_S = 4.0
VFR_TIME_BASE = Fraction(1, 1000)
VFR_GAPS_S = (0.02, 0.03, 0.04, 0.05, 0.06, 0.07)  # a phone's irregular frame intervals


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """A centre that is at `anchor` (x, y) at time `anchor_s` and moves at piecewise-constant velocity:
    `velocities[k]` (px/s) from `changes_s[k - 1]` on (velocities[0] before changes_s[0])."""

    anchor_s: float
    anchor: tuple[float, float]
    velocities: tuple[tuple[float, float], ...]
    changes_s: tuple[float, ...] = ()

    def _travel(self, seconds: float) -> np.ndarray:
        """Displacement from time 0 to `seconds` (negative times included)."""
        bounds = (-np.inf, *self.changes_s, np.inf)
        total = np.zeros(2)
        for k, velocity in enumerate(self.velocities):
            lo, hi = max(bounds[k], 0.0), min(bounds[k + 1], seconds)
            if seconds >= 0 and hi > lo:
                total += np.array(velocity) * (hi - lo)
            lo, hi = max(bounds[k], seconds), min(bounds[k + 1], 0.0)
            if seconds < 0 and hi > lo:
                total -= np.array(velocity) * (hi - lo)
        return total

    def centre(self, seconds: float) -> np.ndarray:
        return np.array(self.anchor) + self._travel(seconds) - self._travel(self.anchor_s)


@dataclasses.dataclass
class TrackedObject:
    """One identity of a tracking scene; larger `depth` is nearer the camera (drawn over the others)."""

    track_id: int
    class_id: int
    image: np.ndarray
    alpha: np.ndarray
    depth: int
    path: Trajectory


Placement = tuple[tuple[slice, slice], tuple[slice, slice], int, int]


def _placement(item: TrackedObject, seconds: float, size: tuple[int, int]) -> Placement | None:
    """Where `item` lies in the frame at `seconds`: the frame region, the matching part of the sprite,
    and the region's top-left (x0, y0); None when it is out of the frame."""
    h, w = item.alpha.shape
    x, y = (int(v) for v in np.round(item.path.centre(seconds) - (w / 2, h / 2)))
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, size[1]), min(y + h, size[0])
    if x1 <= x0 or y1 <= y0:
        return None
    return (slice(y0, y1), slice(x0, x1)), (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x)), x0, y0


def _sprite(kit: SceneKit, rng: np.random.Generator, class_index: int, long_side: int) -> tuple[np.ndarray, np.ndarray]:
    return resized_sprite(kit.sprites[class_index], long_side, bool(rng.random() < 0.5))


def tracking_scene(kit: SceneKit, rng: np.random.Generator, size: tuple[int, int],
                   duration_s: float = TRACKING_DURATION_S, traffic: int = 2) -> list[TrackedObject]:
    """The objects of a tracking scene, in three horizontal bands (in random order):
    - an occlusion: a small object passes right behind a large, slow one (hidden for several frames);
    - a crossing: two objects moving in opposite directions pass each other, one partly over the other;
    - traffic: `traffic` objects that enter across the left or right edge at different times (one may
      overtake another) and leave across the other edge;
    every moving object changes speed once (a slow-down or a speed-up), away from its crossing."""
    height, width = size
    short = min(size)
    band_centres = (rng.permutation(3) + 0.5) * height / 3
    ellipses = [k for k, sprite in enumerate(kit.sprites) if sprite.mask_shape == "ellipse"]
    objects: list[TrackedObject] = []

    def add(class_index: int, long_side: int, path: Trajectory, depth: int) -> None:
        image, alpha = resized_sprite(kit.sprites[class_index], long_side, bool(rng.random() < 0.5))
        objects.append(TrackedObject(len(objects) + 1, class_index + 1, image, alpha, depth, path))

    def speed_change(velocity: tuple[float, float], after_s: float = 0.0) -> dict:
        factor = float(rng.choice([rng.uniform(0.4, 0.7), rng.uniform(1.4, 2.0)]))
        start = min(max(after_s, 0.15 * duration_s), 0.85 * duration_s)
        return {"velocities": (velocity, (velocity[0] * factor, velocity[1] * factor)),
                "changes_s": (float(rng.uniform(start, 0.9 * duration_s)),)}

    # occlusion: the small object's centre passes the large one's at hide_s
    y = float(band_centres[0])
    hide_s = float(rng.uniform(0.35, 0.6) * duration_s)
    big_centre = (float(rng.uniform(0.3, 0.7) * width), y)
    big_velocity = (float(rng.uniform(-20, 20)), 0.0)
    add(int(rng.choice(ellipses)), int(short * 0.28), Trajectory(hide_s, big_centre, (big_velocity,)), depth=2)
    small_velocity = (big_velocity[0] + float(rng.uniform(180, 240) * rng.choice([-1, 1])), 0.0)
    add(int(rng.integers(len(kit.sprites))), int(short * 0.14),
        Trajectory(hide_s, big_centre, **speed_change(small_velocity, after_s=hide_s + 0.6)), depth=1)
    # crossing: both centres reach the crossing point (one above, one below it) at cross_s
    y = float(band_centres[1])
    cross_s = float(rng.uniform(0.3, 0.7) * duration_s)
    cross_x = float(rng.uniform(0.3, 0.7) * width)
    side = int(short * 0.24)
    front = int(rng.integers(2))
    for k, direction in enumerate((1, -1)):
        velocity = (direction * float(rng.uniform(90, 150)), 0.0)
        centre = (cross_x, y + direction * 0.3 * side)
        add(int(rng.integers(len(kit.sprites))), side,
            Trajectory(cross_s, centre, **speed_change(velocity, after_s=cross_s + 0.4)), depth=int(k == front))
    # traffic: enters across one edge at enter_s
    y = float(band_centres[2])
    direction = float(rng.choice([-1, 1]))
    for k in range(traffic):
        long_side = int(short * rng.uniform(0.2, 0.26))
        enter_s = float(rng.uniform(0, 0.4) * duration_s) if k else 0.0
        edge = -long_side / 2 if direction > 0 else width + long_side / 2
        velocity = (direction * float(rng.uniform(100, 180)), float(rng.uniform(-8, 8)))
        add(int(rng.integers(len(kit.sprites))), long_side,
            Trajectory(enter_s, (edge, y), **speed_change(velocity)), depth=k)
    return objects


def render_tracking_frame(backdrop: np.ndarray, objects: list[TrackedObject], seconds: float,
                          min_visible: float) -> tuple[np.ndarray, list[dict]]:
    """The frame at `seconds` and its annotations: each object's visible box (the extent of its alpha >=
    0.5 not covered by nearer objects, within the frame), `track_id` and `visibility` (that visible part
    as a fraction of the whole object), for objects at least `min_visible` visible."""
    canvas = backdrop.copy()
    size = canvas.shape[:2]
    placed = [(item, _placement(item, seconds, size)) for item in sorted(objects, key=lambda o: o.depth)]
    placed = [(item, place) for item, place in placed if place is not None]
    for item, (region, part, _, _) in placed:  # farthest first, nearer ones blend over it
        blend = item.alpha[part][..., None]
        canvas[region] = np.round(item.image[part] * blend + canvas[region] * (1 - blend)).astype(np.uint8)
    covered = np.zeros(size, bool)
    annotations = []
    for item, (region, part, x0, y0) in reversed(placed):  # nearest first: it hides the others
        solid = item.alpha[part] >= 0.5
        visible = solid & ~covered[region]
        covered[region] |= solid
        visibility = float(visible.sum() / (item.alpha >= 0.5).sum())
        if visibility < min_visible or visibility == 0:
            continue
        rows, cols = np.flatnonzero(visible.any(axis=1)), np.flatnonzero(visible.any(axis=0))
        box = [float(x0 + cols[0]), float(y0 + rows[0]), float(x0 + cols[-1] + 1), float(y0 + rows[-1] + 1)]
        annotations.append({"category_id": item.class_id, "iscrowd": 0, "track_id": item.track_id,
                            "visibility": round(visibility, 4),
                            "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]],
                            "area": (box[2] - box[0]) * (box[3] - box[1])})
    return canvas, sorted(annotations, key=lambda a: a["track_id"])


def tracking_times(duration_s: float, fps: int | None, seed: int) -> tuple[Fraction, list[int]]:
    """Frame timestamps (time base, pts): a constant `fps`, or (fps None) a variable rate whose intervals
    are drawn from VFR_GAPS_S, on a millisecond time base."""
    if fps is not None:
        return Fraction(1, fps), list(range(int(round(duration_s * fps))))
    rng = np.random.default_rng((seed, 1))
    pts, now = [], 0.0
    while now < duration_s - 1e-9:
        pts.append(int(round(now / VFR_TIME_BASE)))
        now += float(rng.choice(VFR_GAPS_S))
    return VFR_TIME_BASE, pts


def write_tracking_clip(kit: SceneKit, path: Path, seed: int, fps: int | None = 25,
                        duration_s: float = TRACKING_DURATION_S, size: tuple[int, int] = (480, 640),
                        min_visible: float = 0.0) -> dict:
    """Encode the tracking scene of `seed` (see `tracking_scene`) at a constant `fps`, or at a variable
    frame rate (fps None: the same scene and motion, sampled at irregular times); returns its ground truth
    (annotations with `track_id` and `visibility`, images with `pts` in seconds), also written to
    `<path>.gt.json`."""
    rng = np.random.default_rng(seed)
    backdrop = background(kit, rng, size)
    objects = tracking_scene(kit, rng, size, duration_s)
    time_base, pts = tracking_times(duration_s, fps, seed)
    return _encode_clip(path, size, fps or 25, time_base, pts,
                        lambda index: render_tracking_frame(backdrop, objects, float(pts[index] * time_base),
                                                            min_visible), kit.class_names)
