"""build_engine(spec): the one entry point the pipeline and `bench` use to get an engine."""
from __future__ import annotations

import os
import sys

import torch

from effdet_video.engine.base import Engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
NMS_MODES = ("device", "host", "none")
CPU_BACKENDS = ("auto", "eager", "onnxruntime", "openvino")
# What `cpu_backend='auto'` means; tests and users can pin one (e.g. eager) without a CLI option.
CPU_BACKEND_ENV = "EFFDET_VIDEO_CPU_BACKEND"


def resolve_device(device: str) -> str:
    """'auto' -> 'cuda' when a GPU is visible, else 'cpu'. A CUDA device that is absent is a UserError."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserError(f"device {device!r} asked for, but this torch build sees no CUDA GPU "
                            "(use device 'cpu' or 'auto')")
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
        return build_cpu_engine(spec)
    from effdet_video.engine.blocking_sync import prefer_blocking_sync
    from effdet_video.engine.cuda import CudaEngine

    prefer_blocking_sync(torch.device(device).index or 0)
    return CudaEngine(spec, device)


def resolve_cpu_backend(spec: EngineSpec) -> tuple[str, ...]:
    """The CPU backend(s) `spec` may run on: ('eager',) or the exported graph's runtimes, of which the
    engine takes the fastest on this CPU. 'auto' (or $EFFDET_VIDEO_CPU_BACKEND) means every installed
    runtime (ONNX Runtime: the `onnx` extra; OpenVINO: the `openvino` extra), else eager; bf16 needs
    OpenVINO."""
    from effdet_video.engine.cpu_runtimes import EXPORT_MODULES, RUNTIME_MODULES, RUNTIMES, installed

    backend = spec.cpu_backend
    if backend == "auto":
        backend = os.environ.get(CPU_BACKEND_ENV, "auto")
    if backend not in CPU_BACKENDS:
        raise UserError(f"unknown CPU backend {backend!r} (expected one of {', '.join(CPU_BACKENDS)})")
    if backend == "auto":
        wanted = ("openvino",) if spec.precision == "bf16" else RUNTIMES
        backends = tuple(name for name in wanted if installed(RUNTIME_MODULES[name] + EXPORT_MODULES)) or ("eager",)
    elif backend != "eager" and not installed(RUNTIME_MODULES[backend] + EXPORT_MODULES):
        extra = "onnx" if backend == "onnxruntime" else "openvino"
        raise UserError(f"CPU backend {backend} is not installed (pip install 'effdet-video[{extra}]')")
    else:
        backends = (backend,)
    if spec.precision == "bf16" and backends != ("openvino",):
        raise UserError("bf16 on the CPU needs the openvino backend (pip install 'effdet-video[openvino]')")
    return backends


def build_cpu_engine(spec: EngineSpec) -> Engine:
    """The CPU engine on `spec`'s backend; an exported engine that fails to build warns and runs eager.
    nms_mode other than 'device' (bench comparisons) runs eager, the mode's reference."""
    from effdet_video.engine.cpu import CpuEngine

    backends = resolve_cpu_backend(spec) if spec.nms_mode == "device" else ("eager",)
    if backends == ("eager",):
        return CpuEngine(spec)
    from effdet_video.engine.cpu_exported import ExportedCpuEngine

    try:
        return ExportedCpuEngine(spec, backends, "bf16" if spec.precision == "bf16" else "fp32")
    except UserError:
        raise
    except Exception as error:  # noqa: BLE001 - eager is always a working engine
        if spec.precision == "bf16":
            raise UserError(f"the bf16 CPU engine could not be built: {error}") from error
        message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
        print(f"warning: the {' or '.join(backends)} CPU engine could not be built, running eager ({message})",
              file=sys.stderr)
        engine = CpuEngine(spec)
        engine.build_info["fallback_error"] = message
        return engine
