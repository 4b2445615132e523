"""Compact lines from the device steps' JSON (bench, batch summaries), for the reply's output tail."""
import json
import sys
from pathlib import Path

for path in map(Path, sys.argv[1:]):
    if not path.exists():
        print(f"{path.name}: missing")
        continue
    data = json.loads(path.read_text())
    name = path.stem
    for row in (data.get("engines", []) if "totals" not in data else []):
        s = row["spec"]
        print(name, "engine", s["model"], "b", s["batch_size"], s["precision"], s["nms_mode"], "img/s", row.get("img_s"),
              "dev", row.get("device_only_img_s"), "lat", row.get("latency"), "cache", row.get("build", {}).get("engine_cache"))
    for row in data.get("peers", []):
        print(name, "peer", row["model"], "b", row["batch_size"], "predict", row["predict_amp_img_s"], "net", row["network_amp_channels_last_img_s"], row.get("latency_host_to_host"))
    for key, start in (data.get("startup") or {}).items():
        print(name, "startup", key, start.get("first_detections_s"), start.get("phases"), {k: start.get("build", {}).get(k) for k in ("compiler", "engine_cache", "compile_or_load_s", "warm_up_and_capture_s", "compile_error", "compiled_later")},
              "settled", (start.get("settled") or {}).get("settled_s"), {k: (start.get("settled") or {}).get("build", {}).get(k) for k in ("compiler", "compiled_after_s", "compile_error")})
    if "video" in data:
        v = data["video"]
        for key in ("ours", "ours_20_boxes", "ours_no_video", "transcode", "encode_only", "writer_only", "naive"):
            e = v[key]
            print(name, key, "fps", e["fps"], "frames", e["frames"], "decoder", e.get("decoder"), "bound_by", e.get("bound_by"), "cpu", e.get("cpu"), "enc", e.get("encoder"),
                  {s["name"]: round(s["utilisation"], 2) for s in e.get("stages", [])})
        print(name, "ratios", v["ratios"])
    if "ratios" in data and "video" not in data:
        print(name, "ratios", data["ratios"])
    if "totals" in data:
        print(name, "totals", data["totals"], "engines", data.get("engines"))
