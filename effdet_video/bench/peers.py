"""Peers measured in the same process and run: Ross Wightman's `effdet` (PyPI) and a naive
one-frame-at-a-time loop over it. Random weights (pretrained=False, pretrained_backbone=False): speed
does not depend on the weights' values."""
from __future__ import annotations

import time

import numpy as np
import torch

from effdet_video.bench.stats import summarize_latencies, time_calls
from effdet_video.errors import UserError

EFFDET_NAMES = {"d0": "tf_efficientdet_d0", "d1": "tf_efficientdet_d1", "d2": "tf_efficientdet_d2",
                "d3": "tf_efficientdet_d3", "d4": "tf_efficientdet_d4", "d5": "tf_efficientdet_d5",
                "d6": "tf_efficientdet_d6", "d7": "tf_efficientdet_d7", "d7x": "tf_efficientdetv2_ds"}


def _effdet_bench(model: str):
    try:
        import effdet
    except ImportError as error:
        raise UserError(f"the effdet peer needs `pip install effdet==0.4.1` ({error})") from error
    bench = effdet.create_model(EFFDET_NAMES[model], bench_task="predict", pretrained=False,
                                pretrained_backbone=False)
    size = bench.config.image_size
    return bench.cuda().eval(), (int(size[0]), int(size[1]))


def _throughput(step, batch_size: int, seconds: float) -> float:
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        torch.cuda.synchronize()
        images += batch_size
    return images / (time.perf_counter() - started)


@torch.inference_mode()
def bench_effdet(model: str, batch_size: int, seconds: float = 3.0, latency_iterations: int = 200) -> dict:
    """rwightman effdet under fp16 autocast: `predict` (network + its decode + batched NMS) and the
    network alone in channels_last; batch-1 latency from a host uint8 frame to host detections."""
    bench, size = _effdet_bench(model)
    x = torch.randn(batch_size, 3, *size, device="cuda")

    def predict() -> torch.Tensor:
        with torch.autocast("cuda", dtype=torch.float16):
            return bench(x)

    network = bench.model.to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def network_only() -> object:
        with torch.autocast("cuda", dtype=torch.float16):
            return network(x_cl)

    row = {"peer": "effdet", "effdet_model": EFFDET_NAMES[model], "batch_size": batch_size,
           "image_size": list(size), "predict_amp_img_s": round(_throughput(predict, batch_size, seconds), 1)}
    row["network_amp_channels_last_img_s"] = round(_throughput(network_only, batch_size, seconds), 1)
    bench.model.to(memory_format=torch.contiguous_format)
    if batch_size == 1:
        row["latency_host_to_host"] = summarize_latencies(
            time_calls(_host_to_host(bench, size), latency_iterations, seconds))
    return row


def effdet_frame_detector(model: str):
    """The naive loop's detector: one RGB frame (any size) -> effdet predict under fp16 autocast ->
    rows (x0, y0, x1, y1, score, class) in frame pixels. Resizes like effdet's own eval transform
    (aspect kept, padded), one frame per call."""
    import cv2

    if not torch.cuda.is_available():
        raise UserError("the effdet peer needs a CUDA GPU")
    bench, size = _effdet_bench(model)
    mean = torch.tensor([0.485, 0.456, 0.406], device="cuda").view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device="cuda").view(1, 3, 1, 1) * 255

    @torch.inference_mode()
    def detect(image: np.ndarray) -> np.ndarray:
        scale = min(size[0] / image.shape[0], size[1] / image.shape[1])
        resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
        canvas = np.zeros((*size, 3), np.uint8)
        canvas[:resized.shape[0], :resized.shape[1]] = resized
        x = torch.from_numpy(canvas).cuda().permute(2, 0, 1)[None].float()
        with torch.autocast("cuda", dtype=torch.float16):
            rows = bench((x - mean) / std)[0].float().cpu().numpy()
        rows[:, :4] /= scale
        return rows

    return detect


def _host_to_host(bench, size: tuple[int, int]):
    """One uint8 frame on the host -> normalised on the GPU -> predict -> detections on the host."""
    frame = np.random.default_rng(0).integers(0, 256, (*size, 3), dtype=np.uint8)
    mean = torch.tensor([0.485, 0.456, 0.406], device="cuda").view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device="cuda").view(1, 3, 1, 1) * 255

    def call() -> np.ndarray:
        x = torch.from_numpy(frame).cuda().permute(2, 0, 1)[None].float()
        with torch.autocast("cuda", dtype=torch.float16):
            return bench((x - mean) / std).cpu().numpy()

    return call
