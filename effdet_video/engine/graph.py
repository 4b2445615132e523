"""The whole per-batch computation as one nn.Module, so it can be compiled and captured as one graph.

uint8 letterboxed frames -> normalise + mask the padding -> EfficientDet -> box decode -> top-k -> NMS ->
frame pixels. Three output modes share the front end:
  device: (detections [B, max_det, 6], num_valid [B]), NMS inside the graph (the product);
  host:   the pre-NMS candidates only, NMS left to the CPU (a `bench` comparison, as Graphcore's
          --onchip-nms false); see `host_nms`;
  none:   the raw head outputs (network-only timing).
"""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from effdet_video.configs import ModelConfig, NmsConfig, get_model_config
from effdet_video.engine.policy import prefers_quick_start
from effdet_video.engine.spec import EngineSpec
from effdet_video.ops import anchors as anchor_ops
from effdet_video.ops import letterbox, postprocess
from effdet_video.ops.nms_host import host_non_max_suppression


def model_config(spec: EngineSpec) -> ModelConfig:
    """The model's config with the spec's image size and NMS method applied, and the class count of the
    spec's weights (a model fine-tuned on a user's classes keeps its architecture's name)."""
    from effdet_video.models.weights import checkpoint_num_classes

    overrides = {}
    if spec.image_size is not None:
        overrides["image_size"] = tuple(spec.image_size)
    config = get_model_config(spec.model, **overrides)
    if spec.weights is not None and not spec.random_weights:
        num_classes = checkpoint_num_classes(spec.weights, config.num_anchors)
        if num_classes is not None:
            config = dataclasses.replace(config, num_classes=num_classes)
    nms = config.nms
    if spec.nms_method is not None:
        nms = dataclasses.replace(nms, method=spec.nms_method)
    nms = dataclasses.replace(nms, max_output_size=spec.max_det)
    return dataclasses.replace(config, nms=nms)


class DetectionGraph(nn.Module):
    """(images uint8 [B,H,W,3], valid_hw int32 [B,2], image_scales float32 [B]) -> mode's outputs.

    The network runs in its parameters' dtype (fp16/bf16 on CUDA); normalisation, box decoding and NMS
    run in float32, where the exp() of box decoding and IoU arithmetic keep their precision.
    """

    def __init__(self, network: nn.Module, config: ModelConfig, mode: str = "device",
                 candidates: int = postprocess.DEFAULT_CANDIDATES) -> None:
        super().__init__()
        if mode not in ("device", "host", "none"):
            raise ValueError(f"unknown mode {mode!r}")
        self.network = network
        self.config = config
        self.mode = mode
        self.nms: NmsConfig = config.nms.resolved()
        self.candidates = candidates
        self.register_buffer("anchors", anchor_ops.generate_anchors(config), persistent=False)

    @property
    def network_dtype(self) -> torch.dtype:
        return next(self.network.parameters()).dtype

    @property
    def num_levels(self) -> int:
        """Feature levels: the network returns this many class outputs, then as many box outputs."""
        return len(self.config.levels)

    def architecture(self) -> str:
        """Everything about the model that shapes the network's graph (not its weights), for the engine
        cache's key."""
        return repr(dataclasses.replace(self.config, nms=None))

    def forward(self, images: torch.Tensor, valid_hw: torch.Tensor, image_scales: torch.Tensor):
        return self._from_network_input(self.network_input(images, valid_hw, image_scales), image_scales)

    def network_input(self, images: torch.Tensor, valid_hw: torch.Tensor, image_scales: torch.Tensor) -> torch.Tensor:
        """What `forward` hands the network for these inputs (dtype and memory layout included)."""
        x = letterbox.normalize_and_mask(images, valid_hw, self.config.mean_rgb, self.config.stddev_rgb)
        return self._to_network_layout(x)

    def _to_network_layout(self, x: torch.Tensor) -> torch.Tensor:
        return x.to(self.network_dtype).contiguous(memory_format=torch.channels_last)

    def from_normalized(self, x: torch.Tensor, image_scales: torch.Tensor):
        """The rest of the graph on an already normalised float NCHW batch (AutoML's exact inputs)."""
        return self._from_network_input(self._to_network_layout(x), image_scales)

    def _from_network_input(self, x: torch.Tensor, image_scales: torch.Tensor):
        cls_outputs, box_outputs = self.network(x)
        if self.mode == "none":
            return tuple(cls_outputs) + tuple(box_outputs)
        cls_outputs = [c.float() for c in cls_outputs]
        box_outputs = [b.float() for b in box_outputs]
        kept_classes_only = not x.is_cuda  # where it pays (postprocess.select_candidates)
        if self.mode == "host":
            return postprocess.select_candidates(cls_outputs, box_outputs, self.anchors, self.candidates,
                                                 kept_classes_only) + (image_scales * 1,)
        return postprocess.detect(cls_outputs, box_outputs, self.anchors, image_scales,
                                  self.config.image_size, self.nms, self.nms.max_output_size,
                                  self.candidates, kept_classes_only=kept_classes_only)


def host_nms(candidates: tuple[torch.Tensor, ...], image_scales: torch.Tensor, config: ModelConfig,
             max_det: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The host half of the 'host' NMS mode: NMS in numpy on the CPU (`nms_host`, the static loop's
    results without its fixed work), on the candidates the graph selected, then `detect`'s rows."""
    scores, classes, boxes = (t.cpu() for t in candidates)
    keep, kept_scores, num_valid = host_non_max_suppression(boxes.numpy(), scores.numpy(), config.nms, max_det)
    return postprocess.kept_detections(classes, boxes, torch.from_numpy(keep), torch.from_numpy(kept_scores),
                                       torch.from_numpy(num_valid), image_scales.cpu(), config.image_size)


def build_network(spec: EngineSpec, config: ModelConfig) -> nn.Module:
    """EfficientDet with the spec's AutoML .h5 weights (looked up by model name when None), or seeded
    random ones (benchmarks only)."""
    from effdet_video.models.build import build_model
    from effdet_video.models.checkpoints import resolve_weights

    if spec.random_weights:
        return build_model(config, None, random=True)
    return build_model(config, resolve_weights(config.name, spec.weights), random=False)


def build_detection_graph(spec: EngineSpec, config: ModelConfig, dtype: torch.dtype,
                          mode: str = "device") -> DetectionGraph:
    """The detection graph with the spec's weights (or seeded random ones), network in `dtype`, its convs'
    quick-start paths on as the spec's batch size asks (engine/policy.py)."""
    from effdet_video.models.layers import set_quick_start

    network = build_network(spec, config).to(dtype=dtype, memory_format=torch.channels_last).eval()
    set_quick_start(network, prefers_quick_start(spec.batch_size))
    return DetectionGraph(network, config, mode=mode)
