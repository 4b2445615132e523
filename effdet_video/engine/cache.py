"""How the CUDA engine's graph is obtained, and the on-disk engine cache that makes a second start fast.

  inductor: (the default on CUDA) the *network* compiled ahead of time by Inductor (element-wise ops
            fused into the convolutions' epilogues: about 1.8x the throughput of eager). The first start
            for an (architecture, image size, batch, precision, GPU, torch) compiles it, about a minute,
            and saves it in $EFFDET_VIDEO_HOME/engines; every later start loads it (compiled.py).
  eager:    no compilation: starts in seconds on a machine that never compiled; the fallback when
            compilation fails.
In both, the whole per-batch graph (network, box decoding, NMS) is then captured as one CUDA graph. The
NMS stays out of the compiled part: unrolled it made compilation take minutes and gained nothing, being
one Triton kernel inside the captured graph either way.
"""
from __future__ import annotations

import hashlib
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Callable

import torch

from effdet_video.models.checkpoints import weights_home

COMPILERS = ("eager", "inductor")
# Bumped when the way artifacts are made changes (their inputs, options or output order).
ARTIFACT_FORMAT = 1


def cache_root() -> Path:
    """$EFFDET_VIDEO_HOME/engines (default ~/.cache/effdet-video/engines)."""
    return weights_home() / "engines"


def use_inductor_cache() -> Path:
    """Point Inductor's own kernel, FX-graph and AOTAutograd caches into the engine cache (loading an
    artifact unpacks it there)."""
    path = cache_root() / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    return path


def _model_code_digest() -> str:
    """The model code is part of the key: a changed layer must never run an old artifact."""
    digest = hashlib.sha256()
    for entry in sorted(resources.files("effdet_video.models").iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".py"):
            digest.update(entry.name.encode() + entry.read_bytes())
    return digest.hexdigest()


def artifact_path(architecture: str, example: torch.Tensor, dtype: torch.dtype) -> Path:
    """Where the compiled network of `architecture` (a repr of everything that shapes the graph) for
    inputs like `example` lives. The key covers the GPU, torch and Triton versions too."""
    import triton

    device = example.device
    parts = [f"format {ARTIFACT_FORMAT}", architecture, str(tuple(example.shape)), str(example.stride()),
             str(dtype), torch.__version__, str(torch.version.cuda), triton.__version__,
             torch.cuda.get_device_name(device), str(torch.cuda.get_device_capability(device)),
             _model_code_digest()]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
    batch, _, height, width = example.shape
    name = f"b{batch}-{height}x{width}-{str(dtype).removeprefix('torch.')}-{key}.inductor"
    return cache_root() / name


def prepare_graph(compiler: str, build_module: Callable[[], torch.nn.Module],
                  example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.nn.Module, dict]:
    """The detection graph ready to capture, and facts about how it was obtained (for `bench`).

    With 'inductor' the module's network is replaced by its compiled artifact; if compiling fails
    (no compiler toolchain, an unsupported op) the engine says so on stderr and runs eager."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r} (expected one of {', '.join(COMPILERS)})")
    started = time.perf_counter()
    module = build_module()
    info: dict = {"compiler": compiler, "build_module_s": round(time.perf_counter() - started, 3)}
    if compiler == "inductor":
        try:
            info.update(_compile_network(module, example_inputs))
        except Exception as error:  # noqa: BLE001 - eager is always a working engine
            message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
            print(f"warning: engine compilation failed, running uncompiled ({message})", file=sys.stderr)
            info.update(compiler="eager", compile_error=message)
    info["prepare_s"] = round(time.perf_counter() - started, 3)
    return module, info


def _compile_network(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict:
    """Swap `module.network` (a DetectionGraph's) for its cached compiled artifact."""
    from effdet_video.engine.compiled import cached_network

    started = time.perf_counter()
    use_inductor_cache()
    example = module.network_input(*example_inputs)
    path = artifact_path(module.architecture(), example, module.network_dtype)
    if not path.exists():
        print(f"compiling the engine once for this GPU, model and batch size (about a minute); "
              f"cached in {path.parent}", file=sys.stderr)
    levels = module.num_levels

    def unflatten(flat: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return list(flat[:levels]), list(flat[levels:])

    module.network, hit = cached_network(module.network, example, path, unflatten)
    return {"engine_cache": "hit" if hit else "miss", "engine_path": str(path),
            "compile_or_load_s": round(time.perf_counter() - started, 3)}
