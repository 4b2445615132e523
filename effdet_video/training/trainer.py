"""The training loop: AutoML's loss and targets, AdamW or SGD (momentum 0.9) with linear warm-up and a
cosine decay, gradient clipping at norm 10 (AutoML's clip_gradients_norm), bf16 autocast on CUDA.

The schedule runs on progress = max(step / total steps, elapsed / time budget), so a run limited by wall
time still decays its learning rate to the end.
"""
from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from effdet_video.configs import ModelConfig
from effdet_video.engine.graph import DetectionGraph
from effdet_video.engine.policy import prefers_quick_start
from effdet_video.models.efficientdet import EfficientDet
from effdet_video.models.layers import set_quick_start
from effdet_video.ops.letterbox import letterbox_uint8, normalize_and_mask
from effdet_video.training.data import Annotated, DetectionDataset, read_image
from effdet_video.training.evaluate import detections_to_coco
from effdet_video.training.losses import detection_loss

GRADIENT_CLIP_NORM = 10.0
WARMUP_FRACTION = 0.05


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    epochs: int = 10
    max_seconds: float | None = None  # stop (and finish the schedule) at this wall time
    batch_size: int = 16
    optimizer: str = "adamw"  # adamw | sgd
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    jitter: tuple[float, float] = (0.1, 2.0)
    workers: int = 2
    seed: int = 0
    device: str = "cpu"
    log_every: int = 50


def learning_rate_factor(progress: float) -> float:
    """Linear warm-up over the first 5 %, then cosine decay to 0."""
    if progress < WARMUP_FRACTION:
        return max(progress / WARMUP_FRACTION, 1e-3)
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (progress - WARMUP_FRACTION) / (1 - WARMUP_FRACTION))))


def _optimizer(model: torch.nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    """Weight decay on convolution kernels only (not on BN parameters, biases or BiFPN fusion weights)."""
    decayed = [p for p in model.parameters() if p.ndim > 1]
    others = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decayed, "weight_decay": settings.weight_decay}, {"params": others, "weight_decay": 0.0}]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=settings.learning_rate, momentum=0.9)
    if settings.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=settings.learning_rate)
    raise ValueError(f"unknown optimizer {settings.optimizer!r} (adamw or sgd)")


def _epochs(loader: DataLoader, dataset: DetectionDataset, epochs: int) -> Iterator[tuple[int, tuple]]:
    """(epoch, batch) over all epochs; each epoch re-seeds the dataset's augmentation."""
    for epoch in range(epochs):
        dataset.epoch = epoch
        for batch in loader:
            yield epoch, batch


def train(model: EfficientDet, samples: list[Annotated], settings: TrainSettings,
          log: Callable[[str], None] = print) -> dict:
    """Train `model` in place on `samples`; returns {'steps', 'seconds', 'loss'} (last logged loss)."""
    config = model.config
    device = torch.device(settings.device)
    torch.manual_seed(settings.seed)
    model.to(device).train()
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick its fastest kernels
    dataset = DetectionDataset(samples, config, train=True, jitter=settings.jitter, seed=settings.seed)
    loader = DataLoader(dataset, batch_size=settings.batch_size, shuffle=True,
                        drop_last=len(dataset) >= settings.batch_size, num_workers=settings.workers,
                        pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(settings.seed))
    total_steps = settings.epochs * len(loader)
    optimizer = _optimizer(model, settings)
    start = time.monotonic()
    step, loss_value = 0, float("nan")
    for epoch, (images, valid_hw, cls_targets, box_targets) in _epochs(loader, dataset, settings.epochs):
        elapsed = time.monotonic() - start
        progress = step / total_steps
        if settings.max_seconds:
            progress = max(progress, elapsed / settings.max_seconds)
        if progress >= 1.0:
            break
        for group in optimizer.param_groups:
            group["lr"] = settings.learning_rate * learning_rate_factor(progress)
        x = normalize_and_mask(images.to(device, non_blocking=True), valid_hw.to(device), config.mean_rgb,
                               config.stddev_rgb)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            cls_outputs, box_outputs = model(x.contiguous(memory_format=torch.channels_last))
        loss = detection_loss(cls_outputs, box_outputs, cls_targets.to(device), box_targets.to(device),
                              config.num_classes)
        optimizer.zero_grad(set_to_none=True)
        loss.total.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRADIENT_CLIP_NORM)
        optimizer.step()
        step += 1
        if step % settings.log_every == 0 or step == 1:
            loss_value = float(loss.total.detach())
            log(f"epoch {epoch} step {step} {elapsed:.0f}s loss {loss_value:.4f} "
                f"(cls {float(loss.cls.detach()):.4f} box {float(loss.box.detach()):.5f}) "
                f"lr {optimizer.param_groups[0]['lr']:.2e}")
    model.eval()
    return {"steps": step, "seconds": time.monotonic() - start, "loss": loss_value}


@torch.no_grad()
def predict_images(model: EfficientDet, samples: list[Annotated], batch_size: int = 8,
                   max_det: int = 100) -> list[dict]:
    """COCO results (image_id = 1-based position in `samples`) of `model` on `samples`, through inference's
    own letterbox and detection graph (NMS as the model config says), its convs as an engine of
    `batch_size` runs them."""
    config: ModelConfig = model.config
    device = next(model.parameters()).device
    set_quick_start(model, prefers_quick_start(batch_size))
    graph = DetectionGraph(model.eval(), dataclasses.replace(config, nms=dataclasses.replace(
        config.nms, max_output_size=max_det))).to(device)
    results = []
    for first in range(0, len(samples), batch_size):
        chunk = samples[first:first + batch_size]
        letterboxed = [letterbox_uint8(read_image(s.path), config.image_size) for s in chunk]
        images = torch.from_numpy(np.stack([image for image, _ in letterboxed])).to(device)
        valid_hw = torch.tensor([g.resized_hw for _, g in letterboxed], dtype=torch.int32, device=device)
        scales = torch.tensor([g.image_scale for _, g in letterboxed], dtype=torch.float32, device=device)
        detections, num_valid = graph(images, valid_hw, scales)
        for offset, (rows, count) in enumerate(zip(detections.cpu().numpy(), num_valid.cpu().numpy())):
            results += detections_to_coco(first + offset + 1, rows[:count])
    return results


def save_weights(model: EfficientDet, path: Path, half: bool = False) -> None:
    """AutoML-layout .h5 (fp16 values when `half`: half the size; the loader casts back on load)."""
    from effdet_video.models.weights import save_automl_h5

    copy = EfficientDet(model.config)
    copy.load_state_dict(model.state_dict())
    save_automl_h5(copy.half() if half else copy, path)
