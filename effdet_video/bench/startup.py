"""Time from process launch to the first detections on the host, with the engine cache as it is.

`python -m effdet_video.bench.startup SPEC_JSON LAUNCH_TIME` builds the engine, runs one batch and prints
one JSON line, then a second once the engine has settled on its final graph (a quick start changes to
the compiled one later, engine/cuda.py); `measure_startup` launches it and times the whole process from
the parent's side (interpreter start and imports included), as a user would. The child also reports when
each phase ended, in seconds since the launch (`phases`), so the bench shows where a slow start goes.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from effdet_video.engine.spec import EngineSpec


def measure_startup(spec: EngineSpec, timeout_s: float = 900) -> dict:
    """Launch a fresh process for `spec`; seconds until its first detections reached the host."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, "-m", __name__, json.dumps(vars(spec)), repr(time.time())],
                               stdout=subprocess.PIPE, text=True)
    line = process.stdout.readline()
    first_detections_s = time.perf_counter() - started
    settled = process.stdout.readline()
    process.wait(timeout=timeout_s)
    if process.returncode != 0 or not line or not settled:
        return {"error": f"start-up probe exited with {process.returncode}"}
    return {"first_detections_s": round(first_detections_s, 3), **json.loads(line),
            "settled": json.loads(settled)}


def _main(spec_json: str, launched: float) -> None:
    def since_launch() -> float:
        return round(time.time() - launched, 3)

    phases = {"interpreter_s": since_launch()}
    import torch

    phases["import_torch_s"] = since_launch()
    from effdet_video.engine.base import InferenceBatch
    from effdet_video.engine.factory import build_engine

    phases["imports_s"] = since_launch()
    if torch.cuda.is_available():
        torch.cuda.init()
    phases["cuda_init_s"] = since_launch()

    fields = json.loads(spec_json)
    if fields.get("image_size") is not None:
        fields["image_size"] = tuple(fields["image_size"])
    spec = EngineSpec(**fields)
    engine = build_engine(spec)
    phases["engine_built_s"] = since_launch()
    height, width = engine.image_size
    frames = np.random.default_rng(0).integers(0, 256, (spec.batch_size, height, width, 3), dtype=np.uint8)
    result = engine.infer(InferenceBatch(frames, np.tile(np.int32([height, width]), (spec.batch_size, 1)),
                                         np.ones(spec.batch_size, np.float32), spec.batch_size))
    phases["first_detections_s"] = since_launch()
    print(json.dumps({"num_valid": int(result.num_valid[0]), "phases": phases,
                      "build": dict(getattr(engine, "build_info", {}))}), flush=True)
    engine.settle()  # a quick start changes to the compiled graph later: when, on a second line
    print(json.dumps({"settled_s": since_launch(), "build": getattr(engine, "build_info", {})}), flush=True)
    engine.close()


if __name__ == "__main__":
    _main(sys.argv[1], float(sys.argv[2]))
