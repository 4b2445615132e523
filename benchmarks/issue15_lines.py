"""Issue 15's acceptance lines from one call's `bench --video` JSONs (benchmarks/device-bench.sh issue15):
python3 benchmarks/issue15_lines.py E2E_NVDEC.json E2E_CPU.json CPUVIDEO.json -> a line each, with its
threshold and whether it holds, then whether all hold. Where the bench ran rounds, a line's ratio is given
twice: of the two runs' median rounds, and paired (the median of each round's own ratio; the rounds run
in alternating order), each round's ratio after them."""
import json
import sys

from effdet_video.bench.video_bench import paired_ratio


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


def paired(run: dict, against: dict | None) -> float:
    if against is None or "fps_rounds" not in run:
        return run["fps"] / against["fps"] if against else run["fps"]
    return paired_ratio(run["fps_rounds"], against["fps_rounds"])


def verdict(value: float, threshold: float) -> str:
    return "met" if value >= threshold else "NOT MET"


lines = [(name, run["fps"] / against["fps"] if against else run["fps"], paired(run, against), threshold,
          by_round(run, against)) for name, run, against, threshold in lines]
for name, value, pair, threshold, rounds in lines:
    print(f"{name:38s} >= {threshold:<6} medians {value:7.3f} {verdict(value, threshold):7s}  paired {pair:7.3f} "
          f"{verdict(pair, threshold):7s}  rounds: {rounds}")
for estimate, index in (("medians", 1), ("paired", 2)):
    held = all(line[index] >= line[3] for line in lines)
    print(f"{estimate}: {'all lines met' if held else 'not all lines met'}")
