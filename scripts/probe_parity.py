"""Device measurement for tests/test_engine_cuda.py's bounds: the CUDA engine at fp32, fp16 and bf16 against
the fp32 CPU engine on the AutoML parity fixture (efficientdet-d0-seed1), one JSON line per precision.

EFFDET_VIDEO_SHARED=... python3 scripts/probe_parity.py   (EFFDET_VIDEO_COMPILER=eager for uncompiled engines)
fp32: the worst box (frame px) and score difference, row for row when the rows come in the same order.
fp16/bf16: the test's `Deviation` per frame, the bound it is held to, same count and best class.
"""
import dataclasses
import json
import os
from pathlib import Path

import numpy as np

from effdet_video.engine.cpu import CpuEngine
from effdet_video.engine.cuda import CudaEngine
from effdet_video.engine.spec import EngineSpec
from tests.engine_inputs import FIXTURE, fixture_batch
from tests.test_engine_cuda import REDUCED_PRECISION_BOUNDS, deviation

fixtures = Path(os.environ.get("EFFDET_VIDEO_SHARED", "../shared")) / "fixtures" / "automl"
spec = EngineSpec(weights=str(fixtures / f"{FIXTURE}.h5"), batch_size=2, device="cpu")
batch = fixture_batch(fixtures)
reference = CpuEngine(spec).infer(batch)
for precision in ("fp32", "fp16", "bf16"):
    cuda_spec = dataclasses.replace(spec, device="cuda", precision=precision)
    with CudaEngine(cuda_spec, "cuda:0") as engine:
        result = engine.infer(batch)
        compiler = engine.build_info.get("compiler")
    frames = []
    for i in range(batch.count):
        ours, ref = result.frame(i), reference.frame(i)
        frame = {"count": [len(ours), len(ref)], "best_class_equal": bool(ours[0, 5] == ref[0, 5])}
        if precision == "fp32" and len(ours) == len(ref):
            frame["rows_in_order"] = bool((ours[:, 5] == ref[:, 5]).all())
            frame["box_px"] = float(np.abs(ours[:, :4] - ref[:, :4]).max())
            frame["score"] = float(np.abs(ours[:, 4] - ref[:, 4]).max())
        else:
            frame.update(dataclasses.asdict(deviation(ours, ref, float(batch.image_scales[i]))))
        frames.append(frame)
    bound = REDUCED_PRECISION_BOUNDS.get(precision)
    print(json.dumps({"precision": precision, "compiler": compiler, "frames": frames,
                      "bound": bound and dataclasses.asdict(bound)}))
