"""The batch command under torch.profiler: GPU time by kernel over a detections-only NVDEC run of every
video in FOLDER, 16 at once (docs/batch-scaling.md): `python benchmarks/probe_batch_profile.py FOLDER`."""
import sys

from torch.profiler import ProfilerActivity, profile

from effdet_video import cli

args = ["batch", sys.argv[1], "-o", "/tmp/oprof", "--format", "jsonl", "--random-weights", "--decoder", "nvdec",
        "--redo", "-q", "-j", "16"]
with profile(activities=[ProfilerActivity.CUDA]) as prof:
    try:
        cli.main(args)
    except SystemExit:
        pass
events = prof.key_averages()
total = sum(e.device_time_total for e in events)
print(f"GPU kernel time total {total / 1e6:.2f} s")
for e in sorted(events, key=lambda e: -e.device_time_total)[:22]:
    print(f"{e.device_time_total / 1e3:9.1f} ms {e.count:7d}  {e.key[:110]}")
