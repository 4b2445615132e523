#!/usr/bin/env bash
# Issue 17 on the lent GPU machine: 32 copies of the 1080p clip, detections only, one process against
# worker processes (--processes-per-gpu K), in one call; prints each run's aggregate fps and the ratio of
# the best K to the best single-process run (the goal: >= 1.8; beyond it, 64 x 1080p30 = 1920 fps).
#   bash benchmarks/batch-processes-bench.sh [K...]        (default K: 2 4 8)
# Carry as for benchmarks/device-bench.sh: .whl/ (av, ... wheels for Python 3.12) and .devdata/media/ with
# bench-1080p30-h264-aac.mp4. Summaries land in $OUT (one JSON per run), logs in /tmp/devlogs.
# Env: COPIES (32), SINGLE_JOBS ("16 32": the single-process -j values), DECODER (auto), RUN_S (240 per run),
# EXTRA (more batch options), PROC_EXTRA (more options for the worker-process runs only), MPS=1 (the
# worker-process runs through a CUDA MPS daemon of this script's own, so that their kernels run
# concurrently instead of in time slices; the single-process runs stay without it). A dry run on a CPU machine, from a venv with the package:
#   COPIES=4 SINGLE_JOBS=2 EXTRA="--device cpu --model demo" OUT=/tmp/o bash benchmarks/batch-processes-bench.sh 2
set -u
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
fi
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 EFFDET_VIDEO_HOME=$PWD/.devcache
export EFFDET_VIDEO_SHARED=${EFFDET_VIDEO_SHARED:-$PWD/.devdata}
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=$PWD/.devcache/pyc
CLIP=$EFFDET_VIDEO_SHARED/media/bench-1080p30-h264-aac.mp4
COPIES=${COPIES:-32}
KS=${*:-2 4 8}
SINGLE_JOBS=${SINGLE_JOBS:-16 32}
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT" /tmp/devlogs /tmp/b$COPIES
for i in $(seq -w 1 "$COPIES"); do ln -sf "$CLIP" "/tmp/b$COPIES/c$i.mp4"; done
nproc; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null

run() {  # run NAME BATCH-ARGS...
  local name=$1; shift
  local t0=$SECONDS
  timeout "${RUN_S:-240}" python3 -m effdet_video.cli batch "/tmp/b$COPIES" -o "/tmp/o_$name" --format jsonl \
    --random-weights --decoder "${DECODER:-auto}" --redo -q --summary-json "$OUT/$name.json" ${EXTRA:-} "$@" \
    > "/tmp/devlogs/$name.out" 2> "/tmp/devlogs/$name.log"; local rc=$?
  [ $rc = 0 ] || tail -5 "/tmp/devlogs/$name.log"
  printf '%-10s rc=%s %4ss\n' "$name" "$rc" "$((SECONDS - t0))"
}

for j in ${SINGLE_JOBS:-16 32}; do run "single_j$j" -j "$j"; done
if [ "${MPS:-0}" = 1 ]; then  # a user-level daemon on pipes of its own: only processes given them use it
  mps=/tmp/effdet-mps; mkdir -p $mps/pipe $mps/log
  CUDA_MPS_PIPE_DIRECTORY=$mps/pipe CUDA_MPS_LOG_DIRECTORY=$mps/log nvidia-cuda-mps-control -d && echo "MPS daemon started"
  trap 'echo quit | CUDA_MPS_PIPE_DIRECTORY=$mps/pipe nvidia-cuda-mps-control' EXIT
  export CUDA_MPS_PIPE_DIRECTORY=$mps/pipe CUDA_MPS_LOG_DIRECTORY=$mps/log
fi
for k in $KS; do run "procs_k$k" --processes-per-gpu "$k" -j "$COPIES" ${PROC_EXTRA:-}; done
unset CUDA_MPS_PIPE_DIRECTORY CUDA_MPS_LOG_DIRECTORY
run "single_j${SINGLE_JOBS%% *}_again" -j "${SINGLE_JOBS%% *}"  # the GPU, caches and clocks as warm as for the last

python3 - "$OUT" <<'EOF'
import json, sys
from pathlib import Path
runs = {}
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    if path.stem.startswith(("single_", "procs_")):
        data = json.loads(path.read_text())
        t = data["totals"]
        runs[path.stem] = t["aggregate_fps"]
        fills = [round(e["fill"], 2) for e in data["engines"]]
        print(f"{path.stem:<18} {t['aggregate_fps']:>8.1f} fps  {t['frames']} frames in {t['wall_s']:.1f} s  "
              f"done {t['done']}/{t['files']}  build {data.get('engine_build_s')} s  engines {len(fills)} fill {fills}")
single = max((fps for name, fps in runs.items() if name.startswith("single_")), default=0.0)
procs = {name: fps for name, fps in runs.items() if name.startswith("procs_")}
if single and procs:
    best = max(procs, key=procs.get)
    print(f"best: {best} {procs[best]:.1f} fps / best single {single:.1f} fps = {procs[best] / single:.2f}x (goal >= 1.8)")
EOF
