"""Issue 15's acceptance lines from one call's `bench --video` JSONs (benchmarks/device-bench.sh issue15):
python3 benchmarks/issue15_lines.py E2E_NVDEC.json E2E_CPU.json CPUVIDEO.json -> a line each, with its
threshold and whether it holds (a ratio of the runs' median rounds where the bench ran rounds, each round's
ratio after it), then whether all hold."""
import json
import sys


def video(path: str) -> dict:
    return json.load(open(path))["video"]


def by_round(run: dict, against: dict | None = None) -> str:
    """Each round's fps, or its ratio to `against`'s same round."""
    mine = run.get("fps_rounds", [])
    if against is None:
        return " ".join(f"{fps:.1f}" for fps in mine)
    return " ".join(f"{a / b:.3f}" for a, b in zip(mine, against.get("fps_rounds", [])))


nvdec, cpu, cpu_only = map(video, sys.argv[1:4])
lines = [
    ("NVDEC annotated / encode-only", nvdec["ours"], nvdec["encode_only"], 0.9),
    ("NVDEC annotated / transcode", nvdec["ours"], nvdec["transcode"], 1.15),
    ("CPU decoding annotated / transcode", cpu["ours"], cpu["transcode"], 1.0),
    ("detections only, NVDEC, fps", nvdec["ours_no_video"], None, 470.0),
    ("CPU only: annotated / detections only", cpu_only["ours"], cpu_only["ours_no_video"], 0.95),
]
lines = [(name, run["fps"] / against["fps"] if against else run["fps"], threshold, by_round(run, against))
         for name, run, against, threshold in lines]
for name, value, threshold, rounds in lines:
    print(f"{name:40s} {value:8.3f}  >= {threshold:<6}  {'met' if value >= threshold else 'NOT MET':8s} rounds: {rounds}")
print("all lines met" if all(value >= threshold for _, value, threshold, _ in lines) else "not all lines met")
