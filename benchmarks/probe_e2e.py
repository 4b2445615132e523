"""One-off device measurement: where the CPU goes in an end-to-end run that writes video.

python3 benchmarks/probe_e2e.py CLIP DECODER PRESET[,PRESET...] [BATCH]  ->  a JSON line a run (all in one
process): fps, cores used, CPU seconds per frame by thread (Python threads by name; every native thread -
FFmpeg, x264, OpenCV, CUDA - as 'native'; child processes, such as the encoder, only in the cores used),
and the stage utilisations; preset none writes detections only.
python3 benchmarks/probe_e2e.py gil CLIP BURNERS  ->  libx264 veryfast encode-only fps while BURNERS Python
threads keep the GIL busy (is the encoder's feeding thread slowed by GIL hand-offs?).
"""
import itertools
import json
import os
import re
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu() -> dict[int, float]:
    times = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        times[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return times


class Sampler(threading.Thread):
    def __init__(self):
        super().__init__(daemon=True)
        self.cpu: dict[int, float] = {}
        self.base = thread_cpu()  # threads of earlier runs in this process count from here
        self.names: dict[int, str] = {}
        self.stop = threading.Event()

    def run(self):
        while not self.stop.wait(0.2):
            self.sample()

    def sample(self):
        for thread in threading.enumerate():
            if thread.native_id is not None:
                self.names[thread.native_id] = re.sub(r"[-_]?\d+$", "", thread.name)
        self.cpu.update(thread_cpu())

    def by_group(self, frames: int) -> dict[str, float]:
        groups: dict[str, float] = {}
        for tid, seconds in self.cpu.items():
            seconds -= self.base.get(tid, 0.0)
            name = self.names.get(tid, "native")
            groups[name] = groups.get(name, 0.0) + seconds
        return {k: round(1000 * v / frames, 2) for k, v in sorted(groups.items(), key=lambda kv: -kv[1])}


def e2e(clip: str, decoder: str, presets: str, batch: int) -> None:
    """One run per comma-separated preset, in one process (does a run slow the ones after it?)."""
    from effdet_video.bench import video_bench
    from effdet_video.commands.common import video_opener
    from effdet_video.engine.spec import EngineSpec

    device = os.environ.get("PROBE_DEVICE", "cuda")
    spec = EngineSpec(model="d0", batch_size=batch, device=device, random_weights=True)
    for preset in presets.split(","):
        video_bench.PRESET = preset
        video = preset != "none"
        opener = video_opener(decoder, [f"{device}:0" if device == "cuda" else device])
        sampler = Sampler()
        sampler.start()
        with tempfile.TemporaryDirectory() as folder:
            before = os.times()
            started = time.perf_counter()
            frames, stats = video_bench.ours(Path(clip), None, Path(folder), spec, video, opener)
            wall = time.perf_counter() - started
            after = os.times()
            sampler.sample()
            sampler.stop.set()
        cpu = sum(getattr(after, k) - getattr(before, k)
                  for k in ("user", "system", "children_user", "children_system"))
        print(json.dumps({"decoder": stats["decoder"], "preset": preset, "batch": batch, "fps": round(stats["fps"], 1),
                          "cores_used_incl_build": round(cpu / wall, 2),
                          "cpu_ms_per_frame_by_thread": sampler.by_group(frames),
                          "stages": {s["name"]: round(s["utilisation"], 2) for s in stats["stages"]}}), flush=True)


def gil(clip: str, burners: int) -> None:
    import av

    with av.open(clip) as container:
        stream = container.streams.video[0]
        stream.codec_context.thread_type = "AUTO"
        frames = list(itertools.islice(container.decode(stream), 300))
    stop = threading.Event()

    def burn():
        while not stop.is_set():
            sum(i * i for i in range(500))

    threads = [threading.Thread(target=burn, daemon=True) for _ in range(burners)]
    for thread in threads:
        thread.start()
    with av.open("/tmp/gil.mp4", "w") as out:
        st = out.add_stream("libx264", rate=30, options={"preset": "veryfast", "crf": "20"})
        st.width, st.height, st.pix_fmt = frames[0].width, frames[0].height, "yuv420p"
        st.codec_context.thread_count = 0
        st.codec_context.thread_type = "FRAME"
        t = time.perf_counter()
        for i, f in enumerate(itertools.islice(itertools.cycle(frames), 600)):
            f.pts, f.time_base = i, Fraction(1, 30)
            out.mux(st.encode(f))
        out.mux(st.encode(None))
        wall = time.perf_counter() - t
    stop.set()
    print(json.dumps({"gil_burners": burners, "switch_interval": sys.getswitchinterval(),
                      "encode_fps": round(600 / wall, 1)}), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "gil":
        gil(sys.argv[2], int(sys.argv[3]))
    else:
        e2e(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 8)
