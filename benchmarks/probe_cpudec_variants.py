"""One-off device measurement (docs/performance.md, item 13): the annotated run with CPU decoding, decoder
and encoder thread counts varied, against the transcode peer, in turns.
python3 benchmarks/probe_cpudec_variants.py CLIP ROUNDS VARIANT...  (dec<N>x<M>[:idle|:niceK][:wW]: N decoder
threads, M x264 threads, 0 = FFmpeg's choice; idle / niceK: FFmpeg's decoder threads at SCHED_IDLE / nice K,
the codec opened from a helper thread at that priority, whose threads inherit it, the decode thread itself
unchanged; wW: W prepare and W annotate workers instead of the pipeline's default)"""
import functools
import json
import os
import sys
import tempfile
import threading
from pathlib import Path

import effdet_video.sinks.video_sink as video_sink
from effdet_video.bench import video_bench as vb
from effdet_video.commands.bench import command_spec
from effdet_video.pipeline.runner import PipelineOptions
from effdet_video.sources.source import VideoFileSource, VideoOpener

clip, rounds, variants = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:]
spec = command_spec("d0", None, "fp16", None, "cuda")
original = video_sink.encoder_options


def set_x264_threads(n: int) -> None:
    video_sink.encoder_options = (lambda c, crf, p: {**original(c, crf, p), "threads": str(n)}) if n else original


stream_of = VideoFileSource._video_stream


def lower_priority(mode: str) -> None:
    """This thread (Linux: a nice value or policy is a thread's) at SCHED_IDLE (idle) or nice N (niceN)."""
    if mode == "idle":
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    else:
        os.nice(int(mode.removeprefix("nice")))


def decoder_threads_at(mode: str):
    """VideoFileSource._video_stream whose codec is opened by a helper thread at `mode`'s priority, so
    that FFmpeg's decoder threads, which it starts, inherit it and the decode thread keeps its own."""
    def video_stream(self, nvdec=False, threaded=True):
        stream = stream_of(self, nvdec, threaded)
        if threaded and not nvdec:
            def open_lowered():
                lower_priority(mode)
                stream.codec_context.open()
            opener = threading.Thread(target=open_lowered)
            opener.start()
            opener.join()
        return stream
    return video_stream


with tempfile.TemporaryDirectory() as tmp:
    folder = Path(tmp)
    vb.ours(clip, 60, folder, spec, True, VideoOpener("cpu", decode_threads=8))  # warm the engine cache
    for r in range(rounds):
        t = vb._timed(lambda f: vb.transcode(clip, None, f), folder)
        print(json.dumps({"round": r, "run": "transcode", "fps": t["fps"], "cpu": t["cpu"]["cpu_ms_per_frame"]}), flush=True)
        for v in variants:
            threads, *modes = v[3:].split(":")
            dec, x264 = (int(x) for x in threads.split("x"))
            set_x264_threads(x264)
            priority = next((m for m in modes if not m.startswith("w")), None)
            workers = next((int(m[1:]) for m in modes if m.startswith("w")), None)
            VideoFileSource._video_stream = decoder_threads_at(priority) if priority else stream_of
            vb.PipelineOptions = (functools.partial(PipelineOptions, prepare_workers=workers, annotate_workers=workers)
                                  if workers else PipelineOptions)
            frames, stats = vb.ours(clip, None, folder, spec, True, VideoOpener("cpu", decode_threads=dec))
            enc = stats["encoder"]
            print(json.dumps({"round": r, "run": v, "fps": round(stats["fps"], 1), "cpu": stats["cpu"]["cpu_ms_per_frame"],
                              "own": stats["cpu"]["own_ms"], "child": stats["cpu"]["children_ms"],
                              "starved": enc.get("starved_s"), "first": enc.get("first_frame_after_s")}), flush=True)
