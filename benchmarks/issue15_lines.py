"""Issue 15's acceptance lines from one call's `bench --video` JSONs (benchmarks/device-bench.sh issue15):
python3 benchmarks/issue15_lines.py E2E_NVDEC.json E2E_CPU.json CPUVIDEO.json -> a line each, with its
threshold and whether it holds, then whether all hold."""
import json
import sys


def video(path: str) -> dict:
    return json.load(open(path))["video"]


nvdec, cpu, cpu_only = map(video, sys.argv[1:4])
lines = [
    ("NVDEC annotated / encode-only", nvdec["ours"]["fps"] / nvdec["encode_only"]["fps"], 0.9),
    ("NVDEC annotated / transcode", nvdec["ours"]["fps"] / nvdec["transcode"]["fps"], 1.15),
    ("CPU decoding annotated / transcode", cpu["ours"]["fps"] / cpu["transcode"]["fps"], 1.0),
    ("detections only, NVDEC, fps", nvdec["ours_no_video"]["fps"], 470.0),
    ("CPU only: annotated / detections only", cpu_only["ours"]["fps"] / cpu_only["ours_no_video"]["fps"], 0.95),
]
for name, value, threshold in lines:
    print(f"{name:40s} {value:8.3f}  >= {threshold:<6}  {'met' if value >= threshold else 'NOT MET'}")
print("all lines met" if all(value >= threshold for _, value, threshold in lines) else "not all lines met")
