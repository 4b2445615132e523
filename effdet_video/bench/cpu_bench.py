"""`bench --device cpu`: every CPU backend of the engine side by side in one process, on the same inputs and
thread count, against rwightman's effdet `predict` (fp32) at that thread count.

Rows are whole engines (uint8 letterbox in, NMS'd detections out), except `inductor`, the network alone under
torch.compile (opt-in: its compilation takes minutes on a small machine) and effdet's network alone.
"""
from __future__ import annotations

import dataclasses
import sys
import time

import torch

from effdet_video.bench.engine_bench import pipelined_throughput, random_batches
from effdet_video.bench.stats import ratio, summarize_latencies, time_calls
from effdet_video.engine.cpu_exported import cpuinfo
from effdet_video.engine.factory import build_engine
from effdet_video.engine.policy import cpu_streams, cpu_threads
from effdet_video.engine.spec import EngineSpec

CPU_BACKENDS = ("eager", "onnxruntime", "openvino", "openvino-bf16", "inductor")
DEFAULT_CPU_BACKENDS = "eager,onnxruntime,openvino,openvino-bf16"


def cpu_features() -> dict:
    """What the CPU offers for reduced precision (Linux /proc/cpuinfo flags) and the threads used."""
    flags = set((cpuinfo("flags") or "").split())
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_tile", "amx_int8")
    return {"threads": cpu_threads(), "flags": [flag for flag in wanted if flag in flags]}


def _engine_row(spec: EngineSpec, name: str, seconds: float, latency_iterations: int) -> dict:
    started = time.perf_counter()
    try:
        engine = build_engine(spec)
    except Exception as error:  # noqa: BLE001 - one missing backend must not lose the others
        return {"backend": name, "error": f"{type(error).__name__}: {error}"[:300]}
    row = {"backend": name, "what": "engine", "build_s": round(time.perf_counter() - started, 3),
           "build": getattr(engine, "build_info", {})}
    batches = random_batches(spec.batch_size, engine.image_size)
    # As the pipeline runs it: as many batches in flight as the engine runs at once.
    row["img_s"] = round(pipelined_throughput(engine, batches, seconds, in_flight=engine.parallel_batches), 2)
    row["latency"] = summarize_latencies(time_calls(lambda: engine.infer(batches[0]), latency_iterations, seconds))
    engine.close()
    return row


def _throughput(step, batch_size: int, seconds: float) -> float:
    for _ in range(2):
        step()
    images, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        step()
        images += batch_size
    return images / (time.perf_counter() - started)


@torch.inference_mode()
def _inductor_row(spec: EngineSpec, seconds: float) -> dict:
    """The network alone under torch.compile (Inductor's CPU backend), channels_last, weights frozen into the
    graph: Inductor's inference set-up on a CPU, where convolutions go to oneDNN with their weights packed
    once and a SiLU fused into the convolution before it."""
    from torch._inductor import config as inductor_config

    from effdet_video.engine.graph import build_detection_graph, model_config

    torch.set_num_threads(cpu_threads())
    config = model_config(spec)
    graph = build_detection_graph(spec, config, torch.float32, mode="none").eval()
    batch = random_batches(spec.batch_size, config.image_size, count=1)[0]
    x = graph.network_input(torch.from_numpy(batch.images), torch.from_numpy(batch.valid_hw),
                            torch.from_numpy(batch.image_scales))
    started = time.perf_counter()
    try:
        with inductor_config.patch(freezing=True):
            compiled = torch.compile(graph.network)
            compiled(x)
    except Exception as error:  # noqa: BLE001
        return {"backend": "inductor", "error": f"{type(error).__name__}: {error}"[:300]}
    return {"backend": "inductor", "what": "network only", "build_s": round(time.perf_counter() - started, 3),
            "img_s": round(_throughput(lambda: compiled(x), spec.batch_size, seconds), 2)}


@torch.inference_mode()
def bench_effdet_cpu(model: str, batch_size: int, seconds: float, latency_iterations: int) -> dict:
    """rwightman effdet on the CPU in fp32: `predict` (network, its decode and batched NMS) and its network
    alone, at this process's thread count."""
    from effdet_video.bench.peers import EFFDET_NAMES

    try:
        import effdet
    except Exception as error:  # noqa: BLE001 - a missing or broken peer (e.g. a mismatched torchvision)
        return {"peer": "effdet", "error": f"the effdet peer needs `pip install effdet==0.4.1` "
                                          f"({type(error).__name__}: {error})"[:300]}
    torch.set_num_threads(cpu_threads())
    bench = effdet.create_model(EFFDET_NAMES[model], bench_task="predict", pretrained=False,
                                pretrained_backbone=False).eval()
    size = tuple(int(s) for s in bench.config.image_size)
    x = torch.randn(batch_size, 3, *size)
    row = {"peer": "effdet", "effdet_model": EFFDET_NAMES[model], "image_size": list(size),
           "predict_img_s": round(_throughput(lambda: bench(x), batch_size, seconds), 2),
           "network_img_s": round(_throughput(lambda: bench.model(x), batch_size, seconds), 2)}
    row["predict_latency"] = summarize_latencies(time_calls(lambda: bench(x), latency_iterations, seconds))
    return row


def bench_cpu(model: str, batch_size: int, backends: list[str], seconds: float = 5.0, weights: str | None = None,
              image_size: tuple[int, int] | None = None, peers: bool = True, latency_iterations: int = 50) -> dict:
    """Rows per backend and the effdet peer, with each row's ratio to the eager engine and to effdet predict."""
    spec = EngineSpec(model=model, weights=weights, random_weights=weights is None, batch_size=batch_size,
                      device="cpu", image_size=image_size, cpu_streams=cpu_streams("bench", "cpu"))
    rows = []
    for name in backends:
        if name == "inductor":
            rows.append(_inductor_row(spec, seconds))
            continue
        backend, _, precision = name.partition("-")
        rows.append(_engine_row(dataclasses.replace(spec, cpu_backend=backend, precision=precision or "fp32"),
                                name, seconds, latency_iterations))
    peer = bench_effdet_cpu(model, batch_size, seconds, latency_iterations) if peers else None
    eager = next((r.get("img_s") for r in rows if r["backend"] == "eager"), None)
    for row in rows:
        row["vs_eager"] = ratio(row.get("img_s"), eager)
        if peer and "predict_img_s" in peer:
            row["vs_effdet_predict"] = ratio(row.get("img_s"), peer["predict_img_s"])
    return {"model": model, "batch_size": batch_size, "cpu": cpu_features(), "backends": rows, "effdet": peer}


def format_table(result: dict) -> str:
    """The result as a plain-text table (stderr of `bench --device cpu`)."""
    lines = [f"CPU, {result['model']} batch {result['batch_size']}, {result['cpu']['threads']} threads, "
             f"flags {' '.join(result['cpu']['flags']) or '-'}",
             f"{'backend':<16}{'what':<14}{'img/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'x eager':>9}{'x effdet':>10}"]
    for row in result["backends"]:
        if "error" in row:
            lines.append(f"{row['backend']:<16}error: {row['error'][:80]}")
            continue
        latency = row.get("latency", {})
        lines.append(f"{row['backend']:<16}{row['what']:<14}{row['img_s']:>8.2f}{latency.get('p50_ms', float('nan')):>9.1f}"
                     f"{latency.get('p99_ms', float('nan')):>9.1f}{row.get('vs_eager') or float('nan'):>9.2f}"
                     f"{row.get('vs_effdet_predict') or float('nan'):>10.2f}")
    peer = result.get("effdet")
    if peer and "predict_img_s" in peer:
        lines.append(f"{'effdet predict':<16}{'engine':<14}{peer['predict_img_s']:>8.2f}"
                     f"{peer['predict_latency']['p50_ms']:>9.1f}{peer['predict_latency']['p99_ms']:>9.1f}")
        lines.append(f"{'effdet network':<16}{'network only':<14}{peer['network_img_s']:>8.2f}")
    elif peer:
        lines.append(f"effdet: {peer['error']}")
    return "\n".join(lines)


def _main() -> None:
    """`python -m effdet_video.bench.cpu_bench`: the same table without the CLI (whose imports need PyAV),
    with the start-up probe's second start (cached engine) at batch 1 and 2; JSON on stdout."""
    import argparse
    import json

    from effdet_video.bench.startup import measure_startup

    parser = argparse.ArgumentParser(description=_main.__doc__)
    parser.add_argument("--model", default="d0")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--backends", default=DEFAULT_CPU_BACKENDS)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    result = bench_cpu(args.model, args.batch_size, args.backends.split(","), args.seconds)
    spec = EngineSpec(model=args.model, random_weights=True, batch_size=args.batch_size, device="cpu")
    result["startup"] = {"first": measure_startup(spec), "second": measure_startup(spec)}
    print(format_table(result), file=sys.stderr)
    text = json.dumps(result, indent=1)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text + "\n")


if __name__ == "__main__":
    _main()
