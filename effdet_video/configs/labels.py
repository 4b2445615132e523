"""Class names for detections: COCO for AutoML's checkpoints, or a labels file beside other weights.

A labels file sits beside its weights, `<weights stem>.labels.txt`, one class name per line: line k names
class id k (1-based, as the engine reports them). `effdet-video train` writes one; the shipped demo
model has one.
"""
from __future__ import annotations

import functools
from importlib import resources
from pathlib import Path

import yaml

from effdet_video.errors import UserError


@functools.cache
def coco_labels() -> dict[int, str]:
    """1-based COCO category id -> name (80 names over ids 1..90)."""
    text = resources.files(__package__).joinpath("coco_labels.yaml").read_text()
    return {int(k): str(v) for k, v in yaml.safe_load(text).items()}


def label_name(class_id: int, labels: dict[int, str] | None = None) -> str:
    """Name of a class id; ids without a name print as 'class N'."""
    return (labels or coco_labels()).get(int(class_id), f"class {int(class_id)}")


def labels_path(weights: Path) -> Path:
    return Path(weights).with_suffix(".labels.txt")


def read_labels(path: Path) -> dict[int, str]:
    """class id (1-based) -> name, from a labels file."""
    try:
        names = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]
    except OSError as error:
        raise UserError(f"cannot read labels file {path}: {error.strerror}") from None
    return {i: name for i, name in enumerate(names, start=1) if name}


def write_labels(path: Path, names: list[str] | tuple[str, ...]) -> None:
    Path(path).write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


def labels_for_weights(weights: Path | None) -> dict[int, str]:
    """The names for `weights`: its labels file when there is one, else COCO's."""
    if weights is not None and labels_path(weights).is_file():
        return read_labels(labels_path(weights))
    return coco_labels()
