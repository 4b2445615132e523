"""How big an engine's batches are and what that batch size switches on: every default batch and batch
threshold of the package, so that a command's default and the engine behaviour tied to it (quick start,
cuDNN's autotuner) are decided in one place and cannot drift apart.

A batch trades latency for throughput: on a GPU larger batches keep the device busy; on a CPU they only
add latency. A live frame should not wait for others to fill a batch. `batch` shares one engine among
many streams, which fill large batches.
"""
from __future__ import annotations

import os
from typing import Literal, get_args

Mode = Literal["run", "live", "batch", "demo", "bench"]
MODES: tuple[Mode, ...] = get_args(Mode)

CPU_BATCH = 2          # run, batch and bench on a CPU
RUN_GPU_BATCH = 8      # `run` on a GPU: throughput without a long start
BATCH_GPU_BATCH = 64   # `batch` on a GPU: one shared engine, many streams fill it
LIVE_BATCH = 1         # `live` on any device: the lowest latency
DEMO_BATCH = 4         # `demo` on any device: a short clip
STREAM_BATCH = 8       # `batch`: frames one stream hands the shared engine at a time

# Engines of at most this batch (`run`'s, `live`'s) start quickly: the first detections come from the
# eager graph while the compiled one loads (engine/cuda.py), and the network's depthwise and 1x1 convs
# avoid cuDNN, whose first call of each shape costs every start seconds (models/layers.py). cuDNN is
# faster in steady state, so `batch` and larger engines keep it, where the start is a small part of a run.
QUICK_START_BATCH = RUN_GPU_BATCH

# From this batch on, cuDNN's autotuner times every algorithm of every conv shape at each start: seconds
# that pay off on large batches; at smaller ones its heuristic choice is as fast and the start stays short.
AUTOTUNE_MIN_BATCH = 8

# A CPU runtime that runs several batches at once (OpenVINO's streams, the threads split among them)
# multiplies a small model's throughput on many cores, each batch taking longer; at most this many
# (docs/cpu-engine.md: on 16 cores 8 beat 4, above all beside a video encoder).
MAX_CPU_STREAMS = 8

_GPU_DEFAULTS: dict[Mode, int] = {"run": RUN_GPU_BATCH, "live": LIVE_BATCH, "batch": BATCH_GPU_BATCH,
                                  "demo": DEMO_BATCH, "bench": RUN_GPU_BATCH}
_CPU_DEFAULTS: dict[Mode, int] = {"run": CPU_BATCH, "live": LIVE_BATCH, "batch": CPU_BATCH,
                                  "demo": DEMO_BATCH, "bench": CPU_BATCH}


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")


def default_batch_size(mode: Mode, device: str) -> int:
    """The engine batch of command `mode` on a resolved `device` (cpu, cuda, cuda:N) when the user gives
    none. `bench` times the start and the video run of a plain `run`, so it takes `run`'s batch."""
    _check_mode(mode)
    if device == "auto":
        raise ValueError("default_batch_size needs a resolved device, not 'auto'")
    return (_CPU_DEFAULTS if device == "cpu" else _GPU_DEFAULTS)[mode]


def prefers_quick_start(batch_size: int) -> bool:
    """Whether an engine of `batch_size` starts on the eager graph and keeps its convs off cuDNN."""
    return batch_size <= QUICK_START_BATCH


def autotunes_cudnn(batch_size: int) -> bool:
    """Whether an engine of `batch_size` turns on cuDNN's autotuner (torch.backends.cudnn.benchmark)."""
    return batch_size >= AUTOTUNE_MIN_BATCH


def cpu_threads() -> int:
    """The CPUs this process may run on (taskset and cgroup affinity included, unlike os.cpu_count())."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cpu_streams(mode: Mode, device: str, threads: int | None = None) -> int:
    """How many batches the engine of command `mode` on a resolved `device` works on at once: on a CPU
    (`threads` of them, default this process's) `live` wants each frame done soonest, so one batch gets
    every thread, and the others want frames per second; other devices run one batch at a time."""
    _check_mode(mode)
    if device != "cpu" or mode == "live":
        return 1
    return max(1, min(cpu_threads() if threads is None else threads, MAX_CPU_STREAMS))
