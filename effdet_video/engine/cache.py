"""How the CUDA engine's graph is obtained, and the on-disk cache that makes a second start fast.

  eager:    (the default) no compilation: the whole graph is captured as one CUDA graph, which removes
            the launch overhead; start-up is model build + weights + cuDNN warm-up, a few seconds.
  inductor: torch.compile (Inductor) of the *network* only, for more throughput. Its kernel, FX-graph and
            AOTAutograd caches live in $EFFDET_VIDEO_HOME/engines/inductor, so a second start skips
            kernel compilation (Dynamo still re-traces). The NMS loop is left out: unrolled, it made the
            compile take minutes and gained nothing (it is captured in the CUDA graph either way).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import torch

from effdet_video.models.checkpoints import weights_home

COMPILERS = ("eager", "inductor")


def cache_root() -> Path:
    """$EFFDET_VIDEO_HOME/engines (default ~/.cache/effdet-video/engines)."""
    return weights_home() / "engines"


def use_inductor_cache() -> Path:
    """Point Inductor's kernel, FX-graph and AOTAutograd caches into the engine cache."""
    path = cache_root() / "inductor"
    path.mkdir(parents=True, exist_ok=True)
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(path)
    os.environ.setdefault("TORCHINDUCTOR_FX_GRAPH_CACHE", "1")
    os.environ.setdefault("TORCHINDUCTOR_AUTOGRAD_CACHE", "1")
    return path


def prepare_graph(compiler: str, build_module: Callable[[], torch.nn.Module],
                  example_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.nn.Module, dict]:
    """The detection graph ready to capture, and facts about how it was obtained (for `bench`)."""
    if compiler not in COMPILERS:
        raise ValueError(f"unknown compiler {compiler!r} (expected one of {', '.join(COMPILERS)})")
    started = time.perf_counter()
    module = build_module()
    if compiler == "inductor":
        use_inductor_cache()
        # Compiled under inference_mode, as the engine calls it: a grad-mode mismatch would recompile.
        with torch.inference_mode(), torch._inductor.config.patch(freezing=True):
            module.network = torch.compile(module.network, dynamic=False)
            module(*example_inputs)  # compile now (a cache hit on a second start), not at capture time
    return module, {"compiler": compiler, "prepare_s": round(time.perf_counter() - started, 3)}
