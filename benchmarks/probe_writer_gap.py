"""One-off device measurement (docs/performance.md, item 17): where our writer's extra CPU a frame over
libx264 in one process goes. In turns, the same decoded frames: the encode-only peer (decoded frames,
refcounted by the decoder); the same loop on frames wrapped from packed arrays as the encoder process
wraps its slots (FFmpeg copies each); our writer (its encoder process, shared-memory slots).
python3 benchmarks/probe_writer_gap.py CLIP FRAMES ROUNDS"""
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

from effdet_video.bench import video_bench as vb
from effdet_video.sinks.encoding import transfer_to_picture

clip, frames, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
pictures = list(vb._pictures(clip, frames))
width, height = pictures[0].width, pictures[0].height
packed = [np.ascontiguousarray(p.to_ndarray().reshape(-1)) for p in pictures]


def wrapped(folder: Path) -> int:
    return vb._write_all(folder / "wrapped.mp4", (transfer_to_picture(a, "yuv420p", width, height) for a in packed))


with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    for r in range(rounds):
        rows = {"encode_only": vb.encode_only(clip, frames, folder), "wrapped": vb._timed(wrapped, folder),
                "writer_only": vb.writer_only(clip, frames, folder)}
        print(json.dumps({"round": r, **{k: (v["fps"], v["cpu"]["cpu_ms_per_frame"]) for k, v in rows.items()}}), flush=True)
