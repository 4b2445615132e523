"""The on-disk engine cache: a compiled graph is built once per (spec, code, torch, GPU) and reloaded.

Two compilers, both PyTorch's own:
  inductor: (the default) torch.compile with Inductor's FX-graph/AOTAutograd caches pointed into the cache directory;
            a second start still re-traces the model with Dynamo, but skips the kernel compilation.
  aoti:     torch.export + AOTInductor -> a .pt2 package (kernels + weights); a second start only loads
            the package. Experimental: on the H100 (torch 2.11) the engine built this way crashed at its
            first run or capture; not the default until that is understood.
  eager:    no compilation (the CUDA graph capture still removes launch overhead).
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Callable

import torch

from effdet_video.engine.spec import EngineSpec

COMPILERS = ("aoti", "inductor", "eager")  # in fallback order
_CODE_PACKAGES = ("models", "ops", "engine")


def cache_root() -> Path:
    """$EFFDET_VIDEO_HOME/engines (default ~/.cache/effdet-video/engines)."""
    home = os.environ.get("EFFDET_VIDEO_HOME") or Path.home() / ".cache" / "effdet-video"
    return Path(home) / "engines"


@functools.cache
def _code_fingerprint() -> str:
    """Hash of the sources that define the graph: an edited model or NMS must not reuse a stale engine."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for name in _CODE_PACKAGES:
        for path in sorted((package / name).rglob("*.py")):
            digest.update(path.relative_to(package).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _weights_identity(weights: str | None) -> str | None:
    if weights is None:
        return None
    stat = Path(weights).stat()
    return f"{Path(weights).resolve()}:{stat.st_size}:{stat.st_mtime_ns}"


def engine_key(spec: EngineSpec, compiler: str, device: str) -> str:
    """Stable name of an engine: everything that changes the compiled artefact goes in."""
    props = torch.cuda.get_device_properties(torch.device(device))
    fields = {
        "spec": {**vars(spec), "weights": _weights_identity(spec.weights), "device": None},
        "compiler": compiler,
        "code": _code_fingerprint(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": f"{props.name}:sm{props.major}{props.minor}",
    }
    text = json.dumps(fields, sort_keys=True, default=str)
    return f"{spec.model}-b{spec.batch_size}-{spec.precision}-{spec.nms_mode}-{compiler}-" \
           f"{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def use_inductor_cache() -> Path:
    """Point Inductor's kernel, FX-graph and AOTAutograd caches into the engine cache."""
    path = cache_root() / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return path


def load_or_compile(key: str, compiler: str, build_module: Callable[[], torch.nn.Module],
                    example_inputs: tuple[torch.Tensor, ...]) -> tuple[Callable, dict]:
    """A callable running the graph, and facts about how it was obtained (for `bench`). A compiler that
    fails falls back to the next one (aoti -> inductor -> eager), the reason kept in the facts."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r}")
    failures = {}
    for candidate in COMPILERS[COMPILERS.index(compiler):]:
        try:
            runner, info = _load_or_compile(key, candidate, build_module, example_inputs)
        except Exception as error:  # noqa: BLE001 - any compiler failure leaves the slower path
            if candidate == COMPILERS[-1]:
                raise
            failures[candidate] = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:300]}"
            continue
        return runner, ({**info, "fallback_from": failures} if failures else info)


def _load_or_compile(key: str, compiler: str, build_module: Callable[[], torch.nn.Module],
                     example_inputs: tuple[torch.Tensor, ...]) -> tuple[Callable, dict]:
    started = time.perf_counter()
    use_inductor_cache()
    info = {"compiler": compiler, "key": key}
    if compiler == "aoti":
        package = cache_root() / f"{key}.pt2"
        info["cache_hit"] = package.exists()
        if not package.exists():
            with torch.inference_mode(False), torch.no_grad():  # export refuses inference tensors
                _export_package(build_module(), example_inputs, package)
        runner = torch._inductor.aoti_load_package(str(package))
    elif compiler == "inductor":
        # Compiled under inference_mode, as the engine calls it: a grad-mode mismatch would recompile.
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
            runner = torch.compile(build_module(), dynamic=False, fullgraph=False)
            runner(*example_inputs)  # compile now (warm start: a cache hit), not at capture time
    else:
        runner = build_module()
    info["load_s"] = round(time.perf_counter() - started, 3)
    return runner, info


def _export_package(module: torch.nn.Module, example_inputs: tuple[torch.Tensor, ...], package: Path) -> None:
    """Export and AOT-compile; written under a temporary name first so a crash leaves no broken engine."""
    package.parent.mkdir(parents=True, exist_ok=True)
    exported = torch.export.export(module, example_inputs, strict=False)
    partial = package.with_suffix(f".{os.getpid()}.partial.pt2")
    with torch._inductor.config.patch(freezing=True):
        torch._inductor.aoti_compile_and_package(exported, package_path=str(partial))
    os.replace(partial, package)
