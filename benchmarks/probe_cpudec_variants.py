"""One-off device measurement (docs/performance.md, item 13): the annotated run with CPU decoding, decoder
and encoder thread counts varied, against the transcode peer, in turns.
python3 benchmarks/probe_cpudec_variants.py CLIP ROUNDS VARIANT...  (dec<N>x<M>: N decoder threads, M
x264 threads, 0 = FFmpeg's choice)"""
import json
import sys
import tempfile
from pathlib import Path

import effdet_video.sinks.video_sink as video_sink
from effdet_video.bench import video_bench as vb
from effdet_video.commands.bench import command_spec
from effdet_video.sources.source import VideoOpener

clip, rounds, variants = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
spec = command_spec("d0", None, "fp16", None, "cuda")
original = video_sink.encoder_options


def set_x264_threads(n: int) -> None:
    video_sink.encoder_options = (lambda c, crf, p: {**original(c, crf, p), "threads": str(n)}) if n else original


with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    vb.ours(clip, 60, folder, spec, True, VideoOpener("cpu", decode_threads=8))  # warm the engine cache
    for r in range(rounds):
        t = vb._timed(lambda f: vb.transcode(clip, None, f), folder)
        print(json.dumps({"round": r, "run": "transcode", "fps": t["fps"], "cpu": t["cpu"]["cpu_ms_per_frame"]}), flush=True)
        for v in variants:
            dec, x264 = (int(x) for x in v[3:].split("x"))
            set_x264_threads(x264)
            frames, stats = vb.ours(clip, None, folder, spec, True, VideoOpener("cpu", decode_threads=dec))
            enc = stats["encoder"]
            print(json.dumps({"round": r, "run": v, "fps": round(stats["fps"], 1), "cpu": stats["cpu"]["cpu_ms_per_frame"],
                              "own": stats["cpu"]["own_ms"], "child": stats["cpu"]["children_ms"],
                              "starved": enc.get("starved_s"), "first": enc.get("first_frame_after_s")}), flush=True)
