"""img/s of whichever tree's CPU engine is on PYTHONPATH (docs/cpu-engine.md): D0 batch 1, random weights,
as `run` runs it (the policy's streams, engine.parallel_batches in flight, where the tree has them, else one
batch at a time).
`PYTHONPATH=TREE python benchmarks/probe_cpu_engine_rate.py SECONDS [BACKEND]`; without BACKEND the
tree's default engine (an older tree has no cpu_backend)."""
import json
import sys

from effdet_video.bench.engine_bench import pipelined_throughput, random_batches
from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec

seconds = float(sys.argv[1])
backend = sys.argv[2] if len(sys.argv) > 2 else None
kwargs = {"cpu_backend": backend} if backend else {}
if "cpu_streams" in EngineSpec.__dataclass_fields__:  # the batches `run` keeps in flight (an older tree: one)
    from effdet_video.engine.policy import cpu_streams
    kwargs["cpu_streams"] = cpu_streams("run", "cpu")
spec = EngineSpec(model="d0", random_weights=True, batch_size=1, device="cpu", **kwargs)
engine = build_engine(spec)
batches = random_batches(1, engine.image_size)
in_flight = getattr(engine, "parallel_batches", 1)
rate = pipelined_throughput(engine, batches, seconds, in_flight=in_flight)
print(json.dumps({"backend": backend or (getattr(engine, "build_info", None) or {}).get("backend", "old"), "img_s": round(rate, 2), "in_flight": in_flight,
                  "build": getattr(engine, "build_info", None)}))
