"""Decoding alone, as many streams as asked, to find NVDEC's capacity apart from the pipeline
(docs/batch-scaling.md): `python benchmarks/probe_nvdec_capacity.py CLIP MODE PxT...`, MODE gpu (NVDEC,
frames kept in GPU memory), host (NVDEC, frames downloaded) or cpu (FFmpeg's threads); each PxT runs P
processes of T threads, each thread decoding the whole clip once."""
import multiprocessing as mp
import sys
import threading
import time

import av


def decode(path, mode, counts, index):
    from effdet_video.sources.hw_decode import nvdec_hwaccel, single_threaded
    if mode == "cpu":
        container = av.open(path)
        container.streams.video[0].thread_type = "AUTO"
    else:
        container = av.open(path, hwaccel=nvdec_hwaccel(0, frames_on_gpu=(mode == "gpu")))
        single_threaded(container.streams.video[0].codec_context)
    n = 0
    for _ in container.decode(video=0):
        n += 1
    container.close()
    counts[index] = n


def process(path, mode, threads, queue, barrier):
    if mode != "cpu":
        from effdet_video.sources.hw_decode import bind_torch_context
        bind_torch_context(0)
    counts = [0] * threads
    barrier.wait()
    started = time.perf_counter()
    workers = [threading.Thread(target=decode, args=(path, mode, counts, i)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    queue.put((sum(counts), time.perf_counter() - started))


if __name__ == "__main__":
    path, mode = sys.argv[1], sys.argv[2]
    ctx = mp.get_context("spawn")
    for spec in sys.argv[3:]:
        procs, threads = map(int, spec.split("x"))
        queue, barrier = ctx.Queue(), ctx.Barrier(procs + 1)
        ps = [ctx.Process(target=process, args=(path, mode, threads, queue, barrier)) for _ in range(procs)]
        for p in ps:
            p.start()
        barrier.wait()
        t0 = time.perf_counter()
        results = [queue.get() for _ in ps]
        wall = time.perf_counter() - t0
        for p in ps:
            p.join()
        frames = sum(r[0] for r in results)
        print(f"{mode} {spec}: {frames} frames in {wall:.2f} s = {frames / wall:.0f} fps", flush=True)
