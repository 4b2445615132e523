"""One-off device measurement (docs/performance.md, item 13): our writer alone (its encoder process) with
numpy's OpenBLAS pool in the child and with one thread, in turns, and libx264 in this process beside them.
python3 benchmarks/probe_writer_blas.py CLIP FRAMES ROUNDS  ->  a JSON line a run."""
import json
import sys
import tempfile
from pathlib import Path

import effdet_video.sinks.video_sink as video_sink
from effdet_video.bench import video_bench as vb

clip, frames, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
setting = dict(video_sink.ENCODER_PROCESS_ENVIRONMENT)
with tempfile.TemporaryDirectory() as tmp:
    for r in range(rounds):
        for name, env in (("blas_all", {}), ("blas_one", setting)):
            video_sink.ENCODER_PROCESS_ENVIRONMENT = env
            w = vb.writer_only(clip, frames, Path(tmp))
            e = vb.encode_only(clip, frames, Path(tmp)) if name == "blas_all" else None
            print(json.dumps({"round": r, "run": name, "fps": w["fps"], "child_ms": w["cpu"]["children_ms"],
                              **({"encode_only_fps": e["fps"], "encode_only_ms": e["cpu"]["cpu_ms_per_frame"]} if e else {})}), flush=True)
