#!/usr/bin/env bash
# The figures of docs/perf-notes.md, on the lent GPU machine: bash benchmarks/device-bench.sh STEP...
# Steps (below) print a line each; the JSONs land in $OUT (8 files come back), logs in /tmp/devlogs there.
# Laid out here first, both ignored in .git/info/exclude and named in the call's `carry`:
#   .whl/     wheels for Python 3.12: av, effdet, omegaconf, antlr4-python3-runtime, pycocotools (PyAV is
#             not on that machine; see the device tool's README for the pip download line)
#   .devdata/ what the steps read of ../shared (which does not travel), same layout: media/ (the bench
#             clip, pan-720p30-h264-noaudio.mp4) and, for gputests, fixtures/automl/ (the .h5 and the npz)
# The whole carry must stay under 64 MiB: carry .whl with media for the bench steps, fixtures apart.
set -u
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 EFFDET_VIDEO_HOME=$PWD/.devcache
# ../shared does not travel: the clips and fixtures the steps need are carried in .devdata/ (same layout).
export EFFDET_VIDEO_SHARED=$PWD/.devdata
# Bytecode cached as on any normal install: the image ships torch without .pyc files and sets
# PYTHONDONTWRITEBYTECODE; with both undone torch imports in 1.3-1.6 s instead of 4.4-5.2 s (2026-12-01).
unset PYTHONDONTWRITEBYTECODE
export PYTHONPYCACHEPREFIX=$PWD/.devcache/pyc
CLIP=$EFFDET_VIDEO_SHARED/media/bench-1080p30-h264-aac.mp4
cli="python3 -m effdet_video.cli"
step() {  # step NAME TIMEOUT_S COMMAND...
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  mkdir -p /tmp/devlogs  # only 8 files come back from $OUT: the JSONs go there, the logs stay here
  timeout "$limit" "$@" > "/tmp/devlogs/$name.out" 2> "/tmp/devlogs/$name.log"; local rc=$?
  [ $rc = 0 ] || tail -5 "/tmp/devlogs/$name.log"
  printf '%-14s rc=%s %4ss\n' "$name" "$rc" "$((SECONDS - t0))"
}
# issue15: every acceptance line of issue 15 in one call (a fresh machine: about 7-8 minutes; our runs and the
# peers in rounds of alternating order, each line a ratio of medians and a paired one), then the GPU tests of the annotated path
set -- $(for s in "$@"; do if [ "$s" = issue15 ]; then echo capacity e2e cpuvideo lines15 cpuvideolong gpu15; else echo "$s"; fi; done)
for s in "$@"; do
  case $s in
    env) nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; nproc
         python3 -c "import torch, triton, av; print(torch.__version__, triton.__version__, av.__version__)";;
    d0) step d0 260 $cli bench --models d0 --batch-sizes 1,64 --precisions fp16 --seconds 2 --json "$OUT/d0.json";;
    d3) step d3 300 $cli bench --models d3 --batch-sizes 16 --precisions fp16 --nms device --no-startup --seconds 2 --json "$OUT/d3.json";;
    video) step video 240 $cli bench --models d0 --batch-sizes 8 --nms device --no-peers --no-startup --seconds 1 --video "$CLIP" --json "$OUT/video.json";;
    io) step io 200 python3 benchmarks/probe_io.py "$CLIP"; cat /tmp/devlogs/io.out;;
    profile)  # where a cached start's seconds go (cProfile of the start-up probe, inductor and eager)
      spec='{"model": "d0", "random_weights": true, "batch_size": 8, "device": "cuda", "precision": "fp16"}'
      step warm 200 python3 -m effdet_video.bench.startup "$spec" "$(date +%s.%N)"
      step hitprof 100 python3 -m cProfile -o "$OUT/hit.prof" -m effdet_video.bench.startup "$spec" "$(date +%s.%N)"
      EFFDET_VIDEO_COMPILER=eager step eagerprof 100 python3 -m cProfile -o "$OUT/eager.prof" -m effdet_video.bench.startup "$spec" "$(date +%s.%N)"
      cat /tmp/devlogs/warm.out /tmp/devlogs/hitprof.out /tmp/devlogs/eagerprof.out;;
    startup)  # fresh processes, cache hit
      step startup 240 $cli bench --models d0 --batch-sizes 1 --nms device --no-peers --seconds 1 --json "$OUT/startup.json"
      EFFDET_VIDEO_COMPILER=eager step startup_eager 120 $cli bench --models d0 --batch-sizes 1 --nms device --no-peers --seconds 1 --json "$OUT/startup_eager.json";;
    e2e)  # the end-to-end runs with each decoder
      for d in nvdec cpu; do
        step "e2e_$d" 200 $cli bench --models d0 --nms device --no-peers --no-startup --seconds 1 --batch-sizes 8 \
          --decoder $d --video "$CLIP" --rounds 4 --json "$OUT/e2e_$d.json"
      done;;
    capacity) python3 benchmarks/probe_cpu_capacity.py 2 1,8,12,16;;
    e2e_gil)  # is the write thread (x264) slowed by GIL hand-offs? same run at two switch intervals
      for si in 0.005 0.0005; do
        EFFDET_VIDEO_COMPILER=eager step "e2e_si$si" 200 python3 -c "import sys, runpy; sys.setswitchinterval($si); sys.argv[0] = 'effdet-video'; runpy.run_module('effdet_video.cli', run_name='__main__')" \
          bench --models d0 --nms device --no-peers --no-startup --seconds 1 --batch-sizes 8 --decoder cpu --video "$CLIP" --json "$OUT/e2e_si$si.json"
      done;;
    batch)  # 16 copies of the clip, detections only: 16 streams at once vs one stream, each decoder
      mkdir -p /tmp/b16 /tmp/b1; for i in $(seq -w 1 16); do ln -sf "$CLIP" /tmp/b16/c$i.mp4; done; ln -sf "$CLIP" /tmp/b1/c01.mp4
      for d in nvdec cpu; do
        step "batch16_$d" 120 $cli batch /tmp/b16 -o /tmp/o16_$d --format jsonl -j 16 --random-weights --decoder $d --redo -q --summary-json "$OUT/batch16_$d.json"
        step "batch1_$d" 120 $cli batch /tmp/b1 -o /tmp/o1_$d --format jsonl -j 1 --random-weights --decoder $d --redo -q --summary-json "$OUT/batch1_$d.json"
      done;;
    processes)  # issue 17: 32 copies of the clip, detections only, NVDEC: one process against K per GPU
      mkdir -p /tmp/b32 /tmp/devlogs; for i in $(seq -w 1 32); do ln -sf "$CLIP" /tmp/b32/c$i.mp4; done
      run32() { local name=$1; shift
        ( while sleep 1; do pgrep -c -f nvidia-cuda-mps-server; done > "/tmp/devlogs/$name.mps" ) & local sampler=$!
        step "$name" 240 $cli batch /tmp/b32 -o "/tmp/o_$name" --format jsonl --random-weights --decoder nvdec --redo -q \
          --summary-json "$OUT/$name.json" "$@"; kill $sampler
        python3 -c "import json, sys; r = json.load(open(sys.argv[1])); print(sys.argv[2], r['totals'], r.get('gpu_sharing'))" \
          "$OUT/$name.json" "$name mps-servers=$(sort -n /tmp/devlogs/$name.mps | tail -1)" 2>&1 | tail -1; }
      run32 one_j16 -j 16; run32 one_j32 -j 32
      for k in 2 4; do run32 "k${k}_mps" -j 32 --processes-per-gpu $k; done
      run32 k2_nomps -j 32 --processes-per-gpu 2 --mps off
      run32 one_j16_again -j 16;;
    gputests) step gputests 420 python3 -m pytest -q -ra -m gpu tests/test_engine_cuda.py tests/test_nvdec.py \
                tests/test_ops_capture.py tests/test_ops_nms.py tests/test_models_construction.py
              tail -25 /tmp/devlogs/gputests.out;;
    faults)  # a fresh start under faulthandler, eager then compiled (the second loads what the first built)
      spec='{"model": "d0", "random_weights": true, "batch_size": 8, "device": "cuda", "precision": "fp16"}'
      EFFDET_VIDEO_COMPILER=eager timeout 60 python3 -X faulthandler -m effdet_video.bench.startup "$spec" "$(date +%s.%N)" 2>&1 | grep -v Warning | tail -12
      for run in compile load; do
        echo "== $run"; timeout 200 python3 -X faulthandler -m effdet_video.bench.startup "$spec" "$(date +%s.%N)" 2>&1 | grep -v Warning | tail -14
      done;;
    dwtest) step dwtest 200 python3 -m pytest -q -ra -m gpu tests/test_ops_depthwise.py; tail -3 /tmp/devlogs/dwtest.out;;
    gpuquick)  # the GPU tests of the quick-start kernels and the engine's parity, engines uncompiled (no compile
              # waits) but for the one of the change to the compiled graph
      EFFDET_VIDEO_COMPILER=eager step gpuquick 300 python3 -m pytest -q -ra -m gpu tests/test_ops_depthwise.py \
        tests/test_engine_cuda.py; tail -6 /tmp/devlogs/gpuquick.out;;
    nvdectest) step nvdectest 200 python3 -m pytest -q -ra -m gpu tests/test_nvdec.py; tail -5 /tmp/devlogs/nvdectest.out;;
    aoti) step aoti 300 python3 benchmarks/probe_aoti.py; grep -v Warn /tmp/devlogs/aoti.out; which gdb || true;;
    cudnn)  # first-forward cost per convolution backend (benchmarks/probe_start.py)
      for run in "heur 1" "heur 8" "autotune 8" "nocudnn 8" "linear 8"; do
        step cudnn 120 python3 benchmarks/probe_start.py $run; cat /tmp/devlogs/cudnn.out
      done
      CUDA_MODULE_LOADING=EAGER step cudnn 120 python3 benchmarks/probe_start.py heur 1; cat /tmp/devlogs/cudnn.out;;
    cpu)  # where the CPU goes when video is written (benchmarks/probe_e2e.py), and the GIL's effect on x264
      for run in "cpu veryfast" "nvdec veryfast" "nvdec superfast"; do
        EFFDET_VIDEO_COMPILER=eager step e2ecpu 120 python3 benchmarks/probe_e2e.py "$CLIP" $run; cat /tmp/devlogs/e2ecpu.out
      done
      for n in 0 1 3; do step gil 60 python3 benchmarks/probe_e2e.py gil "$CLIP" $n; cat /tmp/devlogs/gil.out; done;;
    eng8) step eng8 200 $cli bench --models d0 --batch-sizes 1,8 --precisions fp16 --nms device --no-peers --no-startup --seconds 2 --json "$OUT/eng8.json";;
    threads)  # CPU by thread, detections only and with video, default engine (benchmarks/probe_e2e.py)
      for run in "nvdec none" "nvdec veryfast"; do
        step e2ethreads 120 python3 benchmarks/probe_e2e.py "$CLIP" $run; cat /tmp/devlogs/e2ethreads.out
      done;;
    sequence)  # does a run slow the runs after it in one process? eager engine, then compiled (swap thread)
      for c in eager inductor; do
        EFFDET_VIDEO_COMPILER=$c step seq 150 python3 benchmarks/probe_e2e.py "$CLIP" nvdec none,veryfast,none,none; cat /tmp/devlogs/seq.out
      done;;
    ab)  # the file writer in the pipeline's process (last commit's package, carried in .ab/old) against
         # in a process of its own (this tree), interleaved in one run, uncompiled engines alike
      for run in "nvdec veryfast,veryfast" "nvdec veryfast,veryfast" "cpu veryfast"; do
        for code in old new; do
          where=$PWD; [ $code = old ] && where=$PWD/.ab/old
          PYTHONPATH=/tmp/site:$where EFFDET_VIDEO_COMPILER=eager step "ab_$code" 120 python3 benchmarks/probe_e2e.py "$CLIP" $run
          sed "s/^/$code /" "/tmp/devlogs/ab_$code.out"
        done
      done;;
    enc)  # libx264 veryfast encode-only ceiling: thread counts, chunked encoding in N processes (benchmarks/probe_enc.py)
      step enc 240 python3 benchmarks/probe_enc.py "$CLIP" 600; cat /tmp/devlogs/enc.out;;
    e2e_cv1)  # CPU decoding with OpenCV's own thread pool off (one thread per prepare worker)
      step e2e_cv1 200 python3 -c "import cv2, sys, runpy; cv2.setNumThreads(1); sys.argv[0] = 'effdet-video'; runpy.run_module('effdet_video.cli', run_name='__main__')" \
        bench --models d0 --nms device --no-peers --no-startup --seconds 1 --batch-sizes 8 --decoder cpu --video "$CLIP" --json "$OUT/e2e_cv1.json";;
    cpuvideo)  # a CPU-only machine: the GPU hidden, annotated against detections only (720p clip)
      CUDA_VISIBLE_DEVICES= step cpuvideo 300 $cli bench --device cpu --models d0 --batch-sizes 2 --no-peers --no-startup \
        --seconds 0.5 --video "$EFFDET_VIDEO_SHARED/media/pan-720p30-h264-noaudio.mp4" --frames 150 --rounds 4 \
        --json "$OUT/cpuvideo.json";;
    cpuvideolong)  # the same on the 360p clip copied 5 times end to end (300 frames, benchmarks/loop_clip.py):
                   # x264's share of the CPU beside the engine is smallest there, and a run long enough
                   # that its start and drain do not weigh as much as the difference measured
      python3 benchmarks/loop_clip.py "$EFFDET_VIDEO_SHARED/media/pan-360p25-vfr.mkv" /tmp/long360.mkv 5
      CUDA_VISIBLE_DEVICES= step cpuvideolong 300 $cli bench --device cpu --models d0 --batch-sizes 2 --no-peers \
        --no-startup --seconds 0.5 --video /tmp/long360.mkv --rounds 6 --json "$OUT/cpuvideolong.json"
      python3 benchmarks/issue15_lines.py "$OUT/e2e_nvdec.json" "$OUT/e2e_cpu.json" "$OUT/cpuvideolong.json";;
    cpuonly15)  # CPU only: the decoder's and the encoder's thread counts beside a CPU engine, in turns (4 rounds)
      python3 benchmarks/loop_clip.py "$EFFDET_VIDEO_SHARED/media/pan-360p25-vfr.mkv" /tmp/long360.mkv 5
      python3 benchmarks/loop_clip.py "$EFFDET_VIDEO_SHARED/media/pan-720p30-h264-noaudio.mp4" /tmp/long720.mp4 4
      for c in long360.mkv long720.mp4; do
        CUDA_VISIBLE_DEVICES= step "cpuonly_$c" 280 python3 benchmarks/probe_cpu_only_variants.py /tmp/$c 400 4 16 0,0/2,2/2,4/2 0,2
        grep -v Warn "/tmp/devlogs/cpuonly_$c.out"
      done;;
    yuvtests) step yuvtests 300 python3 -m pytest -q -ra -m gpu tests/test_annotate_yuv.py tests/test_nvdec.py
              grep -E "^E |Error|passed|failed" /tmp/devlogs/yuvtests.out | head -30;;
    cpudec15)  # issue 15's CPU-decoding line: our run's variants against the transcode peer, in turns (5 rounds)
      step cpudec15 420 python3 benchmarks/probe_cpudec_variants.py "$CLIP" 5 dec8x0 dec8x0:w2 dec8x0:w4 dec4x0
      grep -v Warn /tmp/devlogs/cpudec15.out;;
    lines15) python3 benchmarks/issue15_lines.py "$OUT/e2e_nvdec.json" "$OUT/e2e_cpu.json" "$OUT/cpuvideo.json";;
    gpu15) step gpu15 300 python3 -m pytest -q -ra -m gpu tests/test_nvdec.py tests/test_gpu_sharing.py tests/test_prepare_on_device.py \
             tests/test_annotate_yuv.py tests/test_encoder_slots.py
           tail -3 /tmp/devlogs/gpu15.out;;
    summary) python3 benchmarks/summarize.py "$OUT"/*.json;;
  esac
done
