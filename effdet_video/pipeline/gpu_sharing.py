"""CUDA's Multi-Process Service (MPS) for batch worker processes that share a GPU.

Why: without MPS, the CUDA contexts of different processes take turns on a GPU in time slices, so the
kernels of two workers never run together, and a second worker on a GPU can only take time from the
first. Under MPS every client's work goes through one server on the GPU and runs concurrently, as the
streams of one process would.

NVIDIA's control program (`nvidia-cuda-mps-control`, shipped with the driver) does the work. The batch
starts one of its own, in the foreground as its child, with a private pipe directory, so that no other
program's CUDA work goes through it; the workers get that directory in their environment, and the
daemon is told to quit (and its server with it) when the batch ends. Nothing is started when MPS is
already set up on the machine (CUDA_MPS_PIPE_DIRECTORY set, or the system daemon's default pipe
present), when no GPU has two workers, or when the control program is missing; the batch then runs as
before and its summary says why. The daemon has a session of its own, so that a Ctrl-C in the terminal
reaches the batch, which quits it; only a batch killed outright (SIGKILL) leaves it behind.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Sequence

CONTROL = "nvidia-cuda-mps-control"
SYSTEM_PIPE = Path("/tmp/nvidia-mps")  # the control daemon's default pipe directory
READY_TIMEOUT_S = 5.0  # for the daemon's control socket to appear
QUIT_TIMEOUT_S = 5.0  # for the daemon (and the server it started) to exit after "quit"
MPS_MODES = ("auto", "off")


@dataclasses.dataclass(frozen=True)
class GpuSharing:
    """How worker processes share their GPUs: `environment` to set in each worker before CUDA starts,
    and `state`, one line for the summary."""

    environment: dict[str, str]
    state: str


def workers_share_a_gpu(worker_devices: Sequence[str]) -> bool:
    counts = collections.Counter(device for device in worker_devices if device.startswith("cuda"))
    return any(count > 1 for count in counts.values())


@contextlib.contextmanager
def gpu_sharing(worker_devices: Sequence[str], mode: str = "auto") -> Iterator[GpuSharing]:
    """MPS for the workers while the context lasts, where `mode` is 'auto' and it is useful and possible."""
    reason = _why_not(worker_devices, mode)
    if reason:
        yield GpuSharing({}, reason)
        return
    folder = Path(tempfile.mkdtemp(prefix="effdet-mps-"))
    environment = {"CUDA_MPS_PIPE_DIRECTORY": str(folder / "pipe"),
                   "CUDA_MPS_LOG_DIRECTORY": str(folder / "log")}
    try:
        daemon = _start_daemon(environment)
    except OSError as error:  # TimeoutError included
        shutil.rmtree(folder, ignore_errors=True)
        yield GpuSharing({}, f"no MPS: its control daemon did not start ({error})")
        return
    try:
        yield GpuSharing(environment, "MPS, a private control daemon")
    finally:
        _quit_daemon(daemon, environment)
        shutil.rmtree(folder, ignore_errors=True)


def _why_not(worker_devices: Sequence[str], mode: str) -> str | None:
    if mode == "off":
        return "no MPS: --mps off"
    if not workers_share_a_gpu(worker_devices):
        return "no MPS: no GPU has two worker processes"
    if os.environ.get("CUDA_MPS_PIPE_DIRECTORY") or (SYSTEM_PIPE / "control").exists():
        return "MPS, the machine's own daemon"
    if shutil.which(CONTROL) is None:
        return f"no MPS: {CONTROL} is not on PATH"
    return None


def _start_daemon(environment: dict[str, str]) -> subprocess.Popen:
    for folder in environment.values():
        os.makedirs(folder, exist_ok=True)
    daemon = subprocess.Popen([CONTROL, "-f"], env={**os.environ, **environment}, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    # A CUDA client that finds no daemon runs without MPS, silently: wait for the control socket.
    control = Path(environment["CUDA_MPS_PIPE_DIRECTORY"]) / "control"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not control.exists():
        if daemon.poll() is not None or time.monotonic() > deadline:
            _quit_daemon(daemon, environment)
            raise TimeoutError(f"exit code {daemon.returncode}" if daemon.returncode is not None
                               else f"no control socket after {READY_TIMEOUT_S:g} s")
        time.sleep(0.01)
    return daemon


def _quit_daemon(daemon: subprocess.Popen, environment: dict[str, str]) -> None:
    """'quit' through the control program; the daemon is killed if it is still there QUIT_TIMEOUT_S later."""
    if daemon.poll() is None:
        with contextlib.suppress(OSError, subprocess.TimeoutExpired):
            subprocess.run([CONTROL], input=b"quit\n", env={**os.environ, **environment}, timeout=QUIT_TIMEOUT_S,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    try:
        daemon.wait(timeout=QUIT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        daemon.kill()
        daemon.wait()
