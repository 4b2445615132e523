"""One-off device measurement (docs/performance.md): how much work the machine's CPUs do at once. N
processes each spin a Python loop for SECONDS; their summed loop rate against one process's says how many
cores' worth of work the machine gives (16 on 16 dedicated cores; less where logical CPUs share cores or a
host takes time back, which /proc/stat counts as steal).
python3 benchmarks/probe_cpu_capacity.py SECONDS 1,N,...  (the first count is the reference: pass 1 first)"""
import json
import multiprocessing
import sys
import time


def spin(seconds: float, result: multiprocessing.Queue) -> None:
    count, end = 0, time.perf_counter() + seconds
    while time.perf_counter() < end:
        for _ in range(10000):
            count += 1
    result.put(count / seconds)


def steal_ticks() -> int:
    return int(open("/proc/stat").readline().split()[8])


if __name__ == "__main__":
    seconds, counts = float(sys.argv[1]), [int(n) for n in sys.argv[2].split(",")]
    single = None
    for n in counts:
        queue = multiprocessing.Queue()
        workers = [multiprocessing.Process(target=spin, args=(seconds, queue)) for _ in range(n)]
        stolen = steal_ticks()
        for worker in workers:
            worker.start()
        rates = [queue.get() for _ in workers]
        for worker in workers:
            worker.join()
        single = single or sum(rates) / n
        print(json.dumps({"processes": n, "cores_worth": round(sum(rates) / single, 2),
                          "steal_s": (steal_ticks() - stolen) / 100}), flush=True)
