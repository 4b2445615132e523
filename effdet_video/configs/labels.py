"""Class names for detections: COCO by default, or a user's own list."""
from __future__ import annotations

import functools
from importlib import resources

import yaml


@functools.cache
def coco_labels() -> dict[int, str]:
    """1-based COCO category id -> name (80 names over ids 1..90)."""
    text = resources.files(__package__).joinpath("coco_labels.yaml").read_text()
    return {int(k): str(v) for k, v in yaml.safe_load(text).items()}


def label_name(class_id: int, labels: dict[int, str] | None = None) -> str:
    """Name of a class id; ids without a name print as 'class N'."""
    return (labels or coco_labels()).get(int(class_id), f"class {int(class_id)}")
