"""One-off device measurement (docs/performance.md, items 13 and 17), CPU only (run with CUDA_VISIBLE_DEVICES=):
detections only and annotated runs in turns, one engine per engine thread count, the encoder process at
equal priority unless a variant says otherwise.
python3 benchmarks/probe_cpu_only_variants.py CLIP FRAMES ROUNDS ENGINE,.. X264,.. [DEC,..]
ENGINE: the engine's threads, optionally xS: its streams (sessions of threads/S each; default the policy's).
X264: the encoder's threads (0: libx264's choice), optionally :idle (SCHED_IDLE), :niceN (nice N) or :affN
(the encoder process on the last N CPUs), and /D: the decoder's frame threads (default: the pipeline's).
DEC: the decoder's threads of the detections-only runs, one run each (default 0, FFmpeg's choice)."""
import dataclasses
import json
import os
import sys
import tempfile
from pathlib import Path

import effdet_video.engine.cpu_exported as cpu_exported
import effdet_video.sinks.video_sink as video_sink
from effdet_video.bench import video_bench as vb
from effdet_video.commands.bench import command_spec
from effdet_video.engine.factory import build_engine
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.sinks.factory import OutputPlan, SinkFactory
from effdet_video.sources.source import VideoOpener, decode_threads_beside_encoder

clip, frames, rounds = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
engines = [tuple(int(n) for n in x.split("x")) for x in sys.argv[4].split(",")]
x264_threads = sys.argv[5].split(",")
detection_decoders = [int(n) for n in sys.argv[6].split(",")] if len(sys.argv) > 6 else [0]
spec = command_spec("d0", None, "auto", None, "cpu")
original = video_sink.encoder_options
popen = video_sink.subprocess.Popen
def scheduling(mode: str):
    """The encoder process's scheduling, set as it starts: idle (SCHED_IDLE), niceN (nice N) or affN (on the
    last N CPUs of this process's only)."""
    if mode == "idle":
        return lambda: os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    if mode.startswith("aff"):
        cpus = sorted(os.sched_getaffinity(0))[-int(mode.removeprefix("aff")):]
        return lambda: os.sched_setaffinity(0, cpus)
    return lambda: os.nice(int(mode.removeprefix("nice")))


def run(engine, folder, video, variant, decoder=0):
    variant, _, decoder_threads = str(variant).partition("/")
    if video:
        decoder = int(decoder_threads) if decoder_threads else decode_threads_beside_encoder()
    x264, _, mode = variant.partition(":")
    x264 = int(x264)
    video_sink.subprocess.Popen = (lambda *a, **k: popen(*a, preexec_fn=scheduling(mode), **k)) if mode else popen
    video_sink.encoder_options = (lambda c, crf, p: {**original(c, crf, p), "threads": str(x264)}) if x264 else original
    source = vb.FirstFrames(VideoOpener("cpu", decode_threads=decoder)(clip), frames)
    try:
        plan = OutputPlan(video=folder / "o.mp4") if video else OutputPlan(jsonl=folder / "o.jsonl")
        sinks = SinkFactory(vb.ENCODER)(plan, source.info)
        cpu = vb._cpu_seconds()
        stats = run_pipeline(source, engine, sinks, PipelineOptions())
        return round(stats.fps, 1), vb.cpu_per_frame(cpu, stats.frames)
    finally:
        source.close()


with tempfile.TemporaryDirectory() as tmp:
    for threads, *streams in engines:
        cpu_exported.cpu_threads = lambda: threads
        with build_engine(dataclasses.replace(spec, cpu_streams=streams[0]) if streams else spec) as engine:
            print(json.dumps({"engine": engine.build_info.get("backend"), "threads": threads, "streams": engine.parallel_batches}), flush=True)
            run(engine, Path(tmp), False, '0')  # warm-up
            for r in range(rounds):
                for decoder in detection_decoders:
                    fps, cpu = run(engine, Path(tmp), False, '0', decoder)
                    print(json.dumps({"round": r, "threads": threads, "run": f"detections dec={decoder}", "fps": fps, "cpu": cpu}), flush=True)
                for x in x264_threads:
                    fps, cpu = run(engine, Path(tmp), True, x)
                    print(json.dumps({"round": r, "threads": threads, "run": f"video x264={x}", "fps": fps, "cpu": cpu}), flush=True)
