"""build_engine(spec): the one entry point the pipeline and `bench` use to get an engine."""
from __future__ import annotations

import torch

from effdet_video.engine.base import Engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
NMS_MODES = ("device", "host", "none")


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. A CUDA device that is absent is a UserError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for, but this torch build sees no CUDA GPU "
                            "(use --device cpu or auto)")
        index = int(device.split(":")[1]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise UserError(f"device {device!r} asked for, but only {torch.cuda.device_count()} "
                            "CUDA device(s) are visible")
        return device
    raise UserError(f"unknown device {device!r} (expected auto, cpu, cuda or cuda:N)")


def build_engine(spec: EngineSpec) -> Engine:
    """The CPU or CUDA engine for `spec`; its device 'auto' picks CUDA when available."""
    if spec.precision not in PRECISIONS:
        raise UserError(f"unknown precision {spec.precision!r} (expected one of {', '.join(PRECISIONS)})")
    if spec.nms_mode not in NMS_MODES:
        raise UserError(f"unknown NMS mode {spec.nms_mode!r} (expected one of {', '.join(NMS_MODES)})")
    if spec.batch_size < 1:
        raise UserError(f"batch size must be at least 1, got {spec.batch_size}")
    device = resolve_device(spec.device)
    if device == "cpu":
        from effdet_video.engine.cpu import CpuEngine

        return CpuEngine(spec)
    from effdet_video.engine.blocking_sync import prefer_blocking_sync
    from effdet_video.engine.cuda import CudaEngine

    prefer_blocking_sync(torch.device(device).index or 0)
    return CudaEngine(spec, device)
