"""Model hyper-parameters (D0–D7x, from AutoML's hparams_config) and runtime presets, kept as YAML."""
from __future__ import annotations

import dataclasses
import functools
from importlib import resources
from typing import Any

import yaml

from effdet_video.errors import UserError


class UnknownModelError(UserError, ValueError):
    """A model name that no config has. A UserError, so that every command reports it as one line (exit
    2) without converting it; a ValueError, as it is a bad argument value to library callers too."""


@dataclasses.dataclass(frozen=True)
class NmsConfig:
    """AutoML's `nms_configs`, with its implicit defaults made explicit by `resolved()`."""

    method: str = "gaussian"
    iou_thresh: float | None = None
    sigma: float | None = None
    score_thresh: float = 0.0
    max_output_size: int = 100

    def resolved(self) -> "NmsConfig":
        """Fill AutoML's implicit values: iou 0.5, sigma 0.5, score floor 0.001 (soft) or -inf (hard)."""
        if self.method not in ("gaussian", "hard"):
            raise ValueError(f"unknown NMS method {self.method!r} (expected 'gaussian' or 'hard')")
        iou = 0.5 if self.iou_thresh is None else float(self.iou_thresh)
        sigma = 0.5 if self.sigma is None else float(self.sigma)
        if self.score_thresh:
            floor = float(self.score_thresh)
        else:
            floor = 0.001 if self.method == "gaussian" else float("-inf")
        return dataclasses.replace(self, iou_thresh=iou, sigma=sigma, score_thresh=floor)


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    name: str
    backbone_name: str
    image_size: tuple[int, int]  # (height, width)
    fpn_num_filters: int
    fpn_cell_repeats: int
    box_class_repeats: int
    min_level: int
    max_level: int
    num_scales: int
    aspect_ratios: tuple[float, ...]
    anchor_scale: float
    num_classes: int
    act_type: str
    separable_conv: bool
    apply_bn_for_resampling: bool
    conv_after_downsample: bool
    conv_bn_act_pattern: bool
    fpn_name: str
    fpn_weight_method: str
    batchnorm_epsilon: float
    mean_rgb: tuple[float, float, float]
    stddev_rgb: tuple[float, float, float]
    nms: NmsConfig

    @property
    def num_anchors(self) -> int:
        """Anchors per feature-map location."""
        return self.num_scales * len(self.aspect_ratios)

    @property
    def levels(self) -> range:
        return range(self.min_level, self.max_level + 1)


@functools.cache
def _model_table() -> dict[str, Any]:
    text = resources.files(__package__).joinpath("models.yaml").read_text()
    return yaml.safe_load(text)


def model_names() -> list[str]:
    return list(_model_table()["models"])


def _image_size(value: int | str | list[int]) -> tuple[int, int]:
    """AutoML allows an int or 'WxH'; we keep (height, width)."""
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, str):
        w, h = (int(v) for v in value.lower().split("x"))
        return (h, w)
    h, w = value
    return (int(h), int(w))


def get_model_config(name: str, **overrides: Any) -> ModelConfig:
    """Config of `name` ('efficientdet-d0' or 'd0'), with optional field overrides."""
    table = _model_table()
    key = name if name.startswith("efficientdet-") else f"efficientdet-{name}"
    if key not in table["models"]:
        raise UnknownModelError(f"unknown model {name!r}; known: {', '.join(model_names())}")
    merged = {**table["defaults"], **table["models"][key], **overrides}
    nms = merged.pop("nms")
    merged["nms"] = nms if isinstance(nms, NmsConfig) else NmsConfig(**nms)
    merged["image_size"] = _image_size(merged["image_size"])
    for tup in ("aspect_ratios", "mean_rgb", "stddev_rgb"):
        merged[tup] = tuple(float(v) for v in merged[tup])
    return ModelConfig(name=key, **merged)
