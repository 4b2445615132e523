"""One-off device measurement: how fast can libx264 veryfast write the 1080p clip on this machine?

python3 benchmarks/probe_enc.py CLIP [FRAMES]  ->  one JSON line per configuration: encode-only fps (I420
frames already in memory, as the pipeline hands them over) and the cores the encoders kept busy.
Configurations: one encoder with x264's own thread count and others; N encoders in N processes, each
writing every N-th chunk of CHUNK frames (chunked encoding: closed GOPs let the chunks be muxed as one
stream).
"""
import itertools
import json
import os
import sys
import time
from fractions import Fraction

import av
import numpy as np

FRAMES: list[np.ndarray] = []


def decode(clip: str, count: int) -> None:
    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        for frame in itertools.islice(container.decode(stream), count):
            FRAMES.append(frame.to_ndarray(format="yuv420p"))


def encode(indices: list[int], threads: int, params: str, path: str) -> int:
    with av.open(path, "w") as out:
        options = {"preset": "veryfast", "crf": "20"}
        if params:
            options["x264-params"] = params
        stream = out.add_stream("libx264", rate=30, options=options)
        height, width = FRAMES[0].shape[0] * 2 // 3, FRAMES[0].shape[1]
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = threads
        stream.codec_context.thread_type = "FRAME"
        stream.time_base = Fraction(1, 30)
        for i in indices:
            picture = av.VideoFrame.from_ndarray(FRAMES[i % len(FRAMES)], format="yuv420p")
            picture.pts, picture.time_base = i, Fraction(1, 30)
            out.mux(stream.encode(picture))
        out.mux(stream.encode(None))
    return len(indices)


def children_cpu() -> float:
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def single(total: int, threads: int, params: str) -> dict:
    cpu, started = children_cpu(), time.perf_counter()
    encode(list(range(total)), threads, params, "/tmp/enc_single.mp4")
    wall = time.perf_counter() - started
    return {"mode": "single", "threads": threads, "params": params, "fps": round(total / wall, 1),
            "cores": round((children_cpu() - cpu) / wall, 2), "bytes": os.path.getsize("/tmp/enc_single.mp4")}


def chunked(total: int, workers: int, chunk: int, threads: int) -> dict:
    chunks = [list(range(s, min(s + chunk, total))) for s in range(0, total, chunk)]
    cpu, started = children_cpu(), time.perf_counter()
    pids = []
    for w in range(workers):
        pid = os.fork()
        if pid == 0:
            for k, indices in enumerate(chunks[w::workers]):
                encode(indices, threads, "", f"/tmp/enc_w{w}_{k}.mp4")
            os._exit(0)
        pids.append(pid)
    for pid in pids:
        os.waitpid(pid, 0)
    wall = time.perf_counter() - started
    size = sum(os.path.getsize(f"/tmp/{n}") for n in os.listdir("/tmp") if n.startswith("enc_w"))
    for n in os.listdir("/tmp"):
        if n.startswith("enc_w"):
            os.unlink(f"/tmp/{n}")
    return {"mode": "chunked", "workers": workers, "chunk": chunk, "threads": threads,
            "fps": round(total / wall, 1), "cores": round((children_cpu() - cpu) / wall, 2), "bytes": size}


def main() -> None:
    clip = sys.argv[1]
    total = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    decode(clip, 300)
    print(json.dumps({"cpus": os.cpu_count(), "frames": total}), flush=True)
    cores = os.cpu_count() or 1
    runs = [lambda: single(total, 0, ""), lambda: single(total, cores, ""), lambda: single(total, 2 * cores, ""),
            lambda: single(total, 0, "sliced-threads=1"), lambda: single(total, 0, "lookahead-threads=4")]
    for workers in (2, 4):
        for chunk in (30, 60):
            runs.append(lambda w=workers, c=chunk: chunked(total, w, c, max(1, 2 * cores // w)))
    runs.append(lambda: chunked(total, 8, 60, 4))
    for run in runs:
        print(json.dumps(run()), flush=True)


if __name__ == "__main__":
    main()
