"""`effdet-video bench`: engine throughput/latency per model, batch size, precision and NMS mode, with
peers measured in the same process and run (rwightman's effdet, a naive loop), engine start-up time,
and the ratios the acceptance criteria are stated in. Prints JSON."""
from __future__ import annotations

import itertools
import json
import platform
from pathlib import Path

import click
import torch

from effdet_video.bench.stats import ratio
from effdet_video.configs import get_model_config
from effdet_video.engine.policy import cpu_streams, default_batch_size
from effdet_video.engine.spec import EngineSpec
from effdet_video.sources.hw_decode import DECODERS


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _environment() -> dict:
    env = {"torch": torch.__version__, "python": platform.python_version()}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
    return env


def _swept_batch_sizes() -> str:
    """--batch-sizes' default: the GPU batches of `live` and `batch`, the two ends the engine serves."""
    return ",".join(str(default_batch_size(mode, "cuda")) for mode in ("live", "batch"))


def command_spec(model: str, weights: str | None, precision: str, image_size: tuple[int, int] | None,
                 device: str) -> EngineSpec:
    """The engine of a plain `effdet-video IN -o OUT` on resolved `device` (the policy's batch for 'bench'),
    which the start-up and --video runs time, so that their figures are that command's."""
    return EngineSpec(model=model, weights=weights, random_weights=weights is None,
                      batch_size=default_batch_size("bench", device), device=device, precision=precision,
                      image_size=image_size, cpu_streams=cpu_streams("bench", device))


def _ratios(engines: list[dict], peers: list[dict]) -> list[dict]:
    """Each engine row against effdet predict AMP of the same model and batch, and device vs host NMS."""
    by_key = {(p["model"], p["batch_size"]): p for p in peers}
    host = {(r["spec"]["model"], r["spec"]["batch_size"], r["spec"]["precision"]): r
            for r in engines if r["spec"]["nms_mode"] == "host"}
    out = []
    for row in engines:
        spec = row["spec"]
        key = (spec["model"], spec["batch_size"])
        entry = {"model": spec["model"], "batch_size": spec["batch_size"], "precision": spec["precision"],
                 "nms_mode": spec["nms_mode"]}
        peer = by_key.get(key)
        if peer and spec["nms_mode"] == "device":
            entry["vs_effdet_predict_amp"] = ratio(row.get("img_s"), peer["predict_amp_img_s"])
        if peer and spec["nms_mode"] == "none":
            entry["network_vs_effdet_network_amp"] = ratio(row.get("device_only_img_s"),
                                                           peer["network_amp_channels_last_img_s"])
        host_row = host.get((spec["model"], spec["batch_size"], spec["precision"]))
        if host_row and spec["nms_mode"] == "device":
            entry["device_nms_vs_host_nms"] = ratio(row.get("img_s"), host_row.get("img_s"))
        if len(entry) > 4:
            out.append(entry)
    return out


@click.command("bench")
@click.option("--models", default="d0", show_default=True, help="Comma-separated: d0,d3,...")
@click.option("--batch-sizes", default=_swept_batch_sizes(), show_default=True)
@click.option("--precisions", default="auto", show_default=True,
              help="auto (fp16 on CUDA, fp32 on CPU), fp32, fp16, bf16")
@click.option("--nms", "nms_modes", default="device,host,none", show_default=True,
              help="device (in the graph), host (CPU NMS of device candidates), none (network only)")
@click.option("--device", default="auto", show_default=True)
@click.option("--weights", type=click.Path(exists=True, dir_okay=False), default=None,
              help="AutoML .h5 (default: seeded random weights; speed does not depend on them)")
@click.option("--seconds", default=3.0, show_default=True, help="Timing window per measurement.")
@click.option("--peers/--no-peers", default=True, show_default=True,
              help="Also time rwightman's effdet (pip install effdet==0.4.1) in this process.")
@click.option("--startup/--no-startup", default=True, show_default=True,
              help="Time a fresh process to its first detections (cached engine, at the batch `run` uses).")
@click.option("--video", "video_path", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Also run end to end on this video: our pipeline (annotated video; detections only), a "
                   "sequential PyAV transcode and a naive one-frame-at-a-time loop, with the first model.")
@click.option("--frames", type=click.IntRange(min=1), default=None, help="Use only this many frames of --video.")
@click.option("--rounds", type=click.IntRange(min=1), default=1, show_default=True,
              help="With --video: run ours and the peers (but the naive loop) this many times in turns, every "
                   "other round in the reverse order; each reports its median round and every round's fps, "
                   "and ratios_paired the median of each round's own ratio.")
@click.option("--track", is_flag=True,
              help="With --video: also run detections only with the tracker on, and report its cost.")
@click.option("--decoder", type=click.Choice(DECODERS), default="auto", show_default=True,
              help="Video decoding of our pipeline runs on --video (as in `run`); the JSON says which one decoded.")
@click.option("--image-size", type=click.IntRange(min=64), default=None,
              help="Override the models' input size (square), e.g. for quick runs on a CPU.")
@click.option("--cpu-backends", default="eager,onnxruntime,openvino,openvino-bf16", show_default=True,
              help="On a CPU: the backends timed side by side (also inductor: the network under torch.compile, weights "
                   "frozen; a minute or more to compile), "
                   "with effdet predict at the same thread count.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Also write the JSON here.")
def command(models: str, batch_sizes: str, precisions: str, nms_modes: str, device: str, weights: str | None,
            seconds: float, peers: bool, startup: bool, video_path: Path | None, frames: int | None,
            rounds: int, decoder: str, image_size: int | None, cpu_backends: str, json_path: str | None, track: bool) -> None:
    """Measure engines and peers; print JSON."""
    for model in _csv(models):  # an unknown name fails the command here, not as one error row per engine
        get_model_config(model)
    from effdet_video.bench.engine_bench import bench_engine

    result: dict = {"environment": _environment(), "engines": [], "peers": []}
    sizes = [int(b) for b in _csv(batch_sizes)]
    square = (image_size, image_size) if image_size else None
    for model, batch, precision, nms_mode in itertools.product(_csv(models), sizes, _csv(precisions),
                                                               _csv(nms_modes)):
        spec = EngineSpec(model=model, weights=weights, random_weights=weights is None, batch_size=batch,
                          device=device, precision=precision, nms_mode=nms_mode, image_size=square)
        row = bench_engine(spec, seconds)
        result["engines"].append(row)
        click.echo(json.dumps(row), err=True)
    from effdet_video.engine.factory import resolve_device

    if resolve_device(device) == "cpu" and _csv(cpu_backends):
        from effdet_video.bench.cpu_bench import bench_cpu, format_table

        result["cpu_backends"] = []
        for model, batch in itertools.product(_csv(models), sizes):
            table = bench_cpu(model, batch, _csv(cpu_backends), seconds, weights, square, peers)
            result["cpu_backends"].append(table)
            click.echo(format_table(table), err=True)
    if peers and torch.cuda.is_available():
        from effdet_video.bench.peers import bench_effdet

        for model, batch in itertools.product(_csv(models), sizes):
            row = {"model": model, **bench_effdet(model, batch, seconds)}
            result["peers"].append(row)
            click.echo(json.dumps(row), err=True)
    resolved = resolve_device(device)
    run_spec = command_spec(_csv(models)[0], weights, _csv(precisions)[0], square, resolved)
    if startup:
        from effdet_video.bench.startup import measure_startup

        result["startup"] = {"first": measure_startup(run_spec), "second": measure_startup(run_spec)}
    if video_path is not None:
        from effdet_video.bench.video_bench import bench_video
        from effdet_video.commands.common import video_opener
        from effdet_video.stages.infer import DetectionFilter
        from effdet_video.stages.track import tracking_options
        from effdet_video.tracking.byte_tracker import TrackerSettings

        tracking = tracking_options(DetectionFilter().score_threshold, TrackerSettings().patience_s, trails=False)
        result["video"] = bench_video(video_path, run_spec, frames, video_opener(decoder, [resolved]),
                                      tracking if track else None,
                                      video_opener(decoder, [resolved], writes_video=True), rounds)
        click.echo(json.dumps(result["video"]["ratios"]), err=True)
        if track:
            click.echo(json.dumps({"tracking": result["video"]["tracking"]}), err=True)
    result["ratios"] = _ratios(result["engines"], result["peers"])
    text = json.dumps(result, indent=1)
    click.echo(text)
    if json_path:
        Path(json_path).write_text(text + "\n")
