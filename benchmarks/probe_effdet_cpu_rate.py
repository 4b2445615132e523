"""img/s of rwightman effdet `predict` (D0 batch 1, fp32, random weights) at this process's thread count, in
an environment of its own where effdet's torchvision does not load beside ours (docs/cpu-engine.md: the
2-core machine). `PYTHONPATH=REPO OTHER_VENV/bin/python benchmarks/probe_effdet_cpu_rate.py SECONDS`"""
import json
import sys

from effdet_video.bench.cpu_bench import bench_effdet_cpu

row = bench_effdet_cpu("d0", 1, float(sys.argv[1]), latency_iterations=10)
print(json.dumps({"backend": "effdet", "img_s": row.get("predict_img_s"), "network_img_s": row.get("network_img_s"),
                  "error": row.get("error")}))
