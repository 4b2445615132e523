"""How the CUDA engine's graph is obtained, and the on-disk engine cache that makes a second start fast.

  inductor: (the default on CUDA) the *network* compiled ahead of time by Inductor (element-wise ops
            fused into the convolutions' epilogues: well above eager's throughput). The first start
            for an (architecture, image size, batch, precision, GPU, torch) compiles it, which is slow,
            and saves it in $EFFDET_VIDEO_HOME/engines; every later start loads it (compiled.py).
            Loading imports torch's compiler stack, seconds, so a quick-start engine (small batches: `run`,
            `live`) starts on the eager graph and changes to the compiled one once a background thread
            has loaded it (engine/cuda.py).
  eager:    no compilation: starts in seconds on a machine that never compiled; the fallback when
            compilation fails.
In both, the whole per-batch graph (network, box decoding, NMS) is then captured as one CUDA graph. The
NMS stays out of the compiled part: unrolled it made compilation take minutes and gained nothing, being
one Triton kernel inside the captured graph either way.
The CPU engine's exported graphs (ONNX, engine/cpu_exported.py) are kept in the same folder.
"""
from __future__ import annotations

import functools
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


def use_kernel_caches() -> None:
    """Point Inductor's own kernel, FX-graph and AOTAutograd caches (loading an artifact unpacks it there)
    and Triton's cache of compiled kernels (ours: NMS, depthwise) into the engine cache, unless the user
    chose them. One Triton directory for every start: Inductor would otherwise pick one of its own while
    it runs, and a start without it would compile our kernels again (seconds of gcc and ptxas)."""
    for variable, name in (("TORCHINDUCTOR_CACHE_DIR", "inductor"), ("TRITON_CACHE_DIR", "triton")):
        if not os.environ.get(variable):
            path = cache_root() / name
            path.mkdir(parents=True, exist_ok=True)
            os.environ[variable] = str(path)


def _model_code_digest() -> str:
    """The model code is part of the key: a changed layer must never run an old artifact."""
    digest = hashlib.sha256()
    for package in ("effdet_video.models", "effdet_video.ops"):  # ops: the custom op the network calls
        for entry in sorted(resources.files(package).iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".py"):
                digest.update(entry.name.encode() + entry.read_bytes())
    return digest.hexdigest()


def weights_digest(module: torch.nn.Module) -> str:
    """A digest of every parameter and buffer: for artifacts with the weights inside (exported graphs)."""
    digest = hashlib.sha256()
    for name, tensor in module.state_dict().items():
        digest.update(name.encode() + str(tensor.dtype).encode() + tensor.cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def cpu_artifact_path(architecture: str, shape: tuple[int, ...], precision: str, backend: str,
                      versions: tuple[str, ...], weights: str, suffix: str) -> Path:
    """Where the CPU engine's exported graph for `architecture` at input `shape` lives. The key covers
    the precision, the backend, the versions that made the file, the model and graph code and the
    weights (an exported graph holds them)."""
    graph_code = (resources.files("effdet_video.engine") / "graph.py").read_bytes()
    parts = [f"format {ARTIFACT_FORMAT}", architecture, str(tuple(shape)), precision, backend, *versions,
             _model_code_digest(), hashlib.sha256(graph_code).hexdigest(), weights]
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()[:20]
    batch, height, width = shape[:3]
    return cache_root() / f"cpu-b{batch}-{height}x{width}-{precision}-{key}.{suffix}"


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
                  example_inputs: tuple[torch.Tensor, ...], quick_start: bool = False,
                  ) -> tuple[torch.nn.Module, dict, Callable[[], dict] | None]:
    """The detection graph ready to capture, facts about how it was obtained (for `bench`), and, for a
    quick start with a cached compiled network, the call that swaps it in later (None otherwise).

    With 'inductor' the module's network is replaced by its compiled artifact; if compiling fails
    (no compiler toolchain, an unsupported op) the engine says so on stderr and runs eager. A quick start
    on a cache hit returns the eager module and leaves the swap to the caller; a cache miss compiles now,
    as the compilation takes a minute either way."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r} (expected one of {', '.join(COMPILERS)})")
    started = time.perf_counter()
    module = build_module()
    info: dict = {"compiler": compiler, "build_module_s": round(time.perf_counter() - started, 3)}
    later = None
    if (compiler == "inductor" and quick_start
            and _artifact_of(module, module.network_input(*example_inputs)).exists()):
        info.update(compiler="eager", engine_cache="hit", compiled_later=True)
        later = functools.partial(_compile_network, module, example_inputs)
    elif compiler == "inductor":
        try:
            info.update(_compile_network(module, example_inputs))
        except Exception as error:  # noqa: BLE001 - eager is always a working engine
            info.update(compiler="eager", compile_error=compile_failure(error))
    info["prepare_s"] = round(time.perf_counter() - started, 3)
    return module, info, later


def compile_failure(error: Exception) -> str:
    """Say on stderr that the engine runs uncompiled, and why (one line, also kept for `bench`)."""
    message = f"{type(error).__name__}: {error}".splitlines()[0][:300]
    print(f"warning: engine compilation failed, running uncompiled ({message})", file=sys.stderr)
    return message


def _artifact_of(module: torch.nn.Module, example: torch.Tensor) -> Path:
    """The artifact of a DetectionGraph's network for network inputs like `example`."""
    return artifact_path(module.architecture(), example, module.network_dtype)


def _compile_network(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...]) -> dict:
    """Swap `module.network` (a DetectionGraph's) for its cached compiled artifact."""
    from effdet_video.engine.compiled import cached_network

    started = time.perf_counter()
    example = module.network_input(*example_inputs)
    path = _artifact_of(module, example)
    if not path.exists():
        print(f"compiling the engine once for this GPU, model and batch size (about a minute); "
              f"cached in {path.parent}", file=sys.stderr)
    levels = module.num_levels

    def unflatten(flat: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return list(flat[:levels]), list(flat[levels:])

    module.network, hit = cached_network(module.network, example, path, unflatten)
    return {"engine_cache": "hit" if hit else "miss", "engine_path": str(path),
            "compile_or_load_s": round(time.perf_counter() - started, 3)}
