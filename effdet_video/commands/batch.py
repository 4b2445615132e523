"""`effdet-video batch INPUT -o OUTDIR`: every video of a folder (or of a list file) into annotated videos
and/or detections under OUTDIR, mirroring the folder structure; resumable; a summary at the end.

Several inputs run at once (--jobs), each its own pipeline; their frames meet in one shared engine per
device (cross-stream batching, engine/shared.py), so the accelerator gets full batches even when every
single video is limited by decoding. Beyond one Python process: --processes / --processes-per-gpu
(worker processes, pipeline/batch_processes.py) and --ray (Ray actors, pipeline/batch_ray.py), each
running the same unit (pipeline/batch_unit.py). Exit code 0 when every input is done, 1 when any failed.
"""
from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, Callable

import click

from effdet_video.commands.common import (
    debug_option,
    detection_filter,
    encoder_settings,
    engine_spec,
    file_options,
    model_labels,
    tracking,
    video_opener,
)
from effdet_video.core.control import Interrupted, RunControl, stop_on_signals
from effdet_video.engine.policy import STREAM_BATCH
from effdet_video.errors import UserError
from effdet_video.pipeline.batch_inputs import OUTPUT_KINDS, VIDEO_EXTENSIONS, BatchItem, find_inputs, parse_extensions
from effdet_video.pipeline.batch_processes import run_batch_processes
from effdet_video.pipeline.batch_runner import BatchOptions, BatchSummary, ItemResult, run_batch
from effdet_video.pipeline.batch_unit import BatchUnit
from effdet_video.pipeline.gpu_sharing import MPS_MODES, gpu_sharing
from effdet_video.pipeline.runner import PipelineOptions
from effdet_video.sinks.output_file import make_output_folder


def parse_kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(part.strip().lower() for part in text.split(",") if part.strip()))
    unknown = [kind for kind in kinds if kind not in OUTPUT_KINDS]
    if unknown or not kinds:
        raise UserError(f"--format {text!r}: expected a comma-separated subset of {', '.join(OUTPUT_KINDS)}")
    return kinds


def parse_devices(text: str | None, device: str) -> list[str]:
    """--devices 'cuda:0,cuda:1' or 'all' (every visible GPU); without it, the one --device. A bare
    'cuda' becomes 'cuda:0', so that every device names its index."""
    from effdet_video.engine import factory  # torch is imported only when an engine is needed

    if text is not None and text.strip() == "all":
        import torch

        if not torch.cuda.is_available():
            raise UserError("--devices all: this torch build sees no CUDA GPU")
        return [f"cuda:{index}" for index in range(torch.cuda.device_count())]
    names = [part.strip() for part in text.split(",") if part.strip()] if text is not None else [device]
    devices = ["cuda:0" if name == "cuda" else name for name in map(factory.resolve_device, names)]
    if not devices or len(set(devices)) < len(devices):
        raise UserError(f"--devices {text!r}: expected distinct devices, e.g. cuda:0,cuda:1")
    return devices


def per_stream_workers(jobs: int) -> int:
    """Prepare/annotate threads per stream: the cores shared among the streams, 1 to 4 each."""
    return max(1, min(4, (os.cpu_count() or 1) // max(1, jobs)))


def worker_devices(devices: list[str], processes: int | None, per_gpu: int | None) -> list[str] | None:
    """The device of each worker process (round robin over `devices`), or None for no worker processes."""
    if processes and per_gpu:
        raise UserError("--processes and --processes-per-gpu: give one of them")
    count = processes or (per_gpu * len(devices) if per_gpu else 0)
    return [devices[index % len(devices)] for index in range(count)] or None


def print_result(result: ItemResult) -> None:
    detail = f": {result.error}" if result.error else f", {result.frames} frames"
    if result.status == "done":
        detail += f", {result.fps:.1f} fps"
    click.echo(f"{result.status} {result.input}{detail}", err=True)


@click.command("batch")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for the outputs; the input folder's structure is mirrored there.")
@click.option("--format", "formats", default="video", show_default=True,
              help="Comma-separated outputs per input: video (annotated copy), jsonl, coco, tracks (with --track: "
                   "one summary per track).")
@click.option("--ext", "extensions", default=",".join(e.lstrip(".") for e in VIDEO_EXTENSIONS), show_default=True,
              help="Extensions of the input videos searched in a folder.")
@click.option("--no-recursive", is_flag=True, help="Only the folder itself, not its subfolders.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
              help="Inputs processed at once, shared out over the worker processes or actors if any "
                   "[default: up to half the CPU cores, at least 4].")
@click.option("--devices", default=None, metavar="LIST",
              help="One engine per device, e.g. cuda:0,cuda:1, or 'all' GPUs (overrides --device).")
@click.option("--stream-batch", type=click.IntRange(min=1), default=STREAM_BATCH, show_default=True,
              help="Frames a stream hands the shared engine at a time.")
@click.option("--linger-ms", type=click.FloatRange(min=0), default=4.0, show_default=True,
              help="How long a partial engine batch waits for more streams' frames.")
@file_options
@click.option("--processes", type=click.IntRange(min=1), default=None,
              help="Worker processes, each with its own engine and --jobs share, the devices in turn "
                   "(with --ray: the number of actors).")
@click.option("--processes-per-gpu", type=click.IntRange(min=1), default=None,
              help="Worker processes per device of --devices (with --ray: actors per GPU, num_gpus 1/K each).")
@click.option("--mps", type=click.Choice(MPS_MODES), default="auto", show_default=True,
              help="Worker processes sharing a GPU run their work on it concurrently through CUDA's "
                   "Multi-Process Service (a daemon of the batch's own, or the machine's), rather than "
                   "taking turns.")
@click.option("--ray", "ray_address", default=None, metavar="ADDRESS",
              help="Run on a Ray cluster (auto, ray://HOST:10001, or 'local' to start one here); "
                   "needs effdet-video[ray] and OUTDIR on storage every node sees.")
@click.option("--redo", is_flag=True, help="Process every input again, even those done by an earlier run.")
@click.option("--summary-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Also write the summary (per input and totals) as JSON here.")
@click.option("-q", "--quiet", is_flag=True, help="No line per finished input (the summary is still printed).")
@debug_option
def command(input_path: Path, output_dir: Path, **options: Any) -> None:
    """Detect objects in every video of INPUT (a folder, or a text file listing videos).

    Engine batches default larger on CUDA here than in `run` (many streams fill them); see --batch-size."""
    kinds = parse_kinds(options["formats"])
    track = tracking(options)
    if "tracks" in kinds and track is None:
        raise UserError("--format tracks needs --track")
    items = find_inputs(input_path, output_dir, parse_extensions(options["extensions"]),
                        recursive=not options["no_recursive"])
    devices = parse_devices(options["devices"], options["device"])
    workers = worker_devices(devices, options["processes"], options["processes_per_gpu"])
    opener = video_opener(options["decoder"], devices)
    spec = engine_spec({**options, "device": devices[0]}, "batch")
    processes = len(workers) if workers else 1
    jobs = options["jobs"] or min(len(items), max(4, (os.cpu_count() or 1) // 2))
    labels = model_labels(options)
    batch_options = BatchOptions(
        output_dir=output_dir,
        output_kinds=kinds,
        jobs=-(-jobs // processes),
        pipeline=PipelineOptions(detection_filter=detection_filter(options), labels=labels,
                                 prepare_workers=per_stream_workers(jobs),
                                 annotate_workers=per_stream_workers(jobs), tracking=track),
        engine=spec,
        encoder=encoder_settings(options),
        redo=options["redo"],
    )
    make_output_folder(output_dir)  # once every option is known good
    unit = BatchUnit(batch_options, tuple(devices), decoder=opener.decoder, frames_on_gpu=opener.frames_on_gpu,
                     stream_batch=options["stream_batch"], linger_s=options["linger_ms"] / 1000,
                     cpu_threads=max(1, (os.cpu_count() or 1) // processes) if workers else None)
    control = RunControl()
    on_result = None if options["quiet"] else print_result
    sharing = None
    with stop_on_signals(control):
        if options["ray_address"]:
            from effdet_video.pipeline.batch_ray import run_batch_ray

            summary = run_batch_ray(items, unit, options["ray_address"], actors=options["processes"],
                                    actors_per_gpu=options["processes_per_gpu"], control=control,
                                    on_result=on_result)
        elif workers:
            with gpu_sharing(workers, options["mps"]) as sharing:
                summary = run_batch_processes(items, [unit.on_devices([device]) for device in workers], control,
                                              on_result, sharing.environment)
        else:
            summary = _run_here(items, unit, control, on_result)
    if sharing and not options["quiet"]:
        click.echo(f"worker processes: {sharing.state}", err=True)
    click.echo(summary.table(), err=True)
    if options["summary_json"]:
        report = {**summary.as_dict(), "devices": devices, "decoder": options["decoder"], "jobs": jobs,
                  "processes": processes if not options["ray_address"] else None, "ray": options["ray_address"],
                  "gpu_sharing": sharing.state if sharing else None,
                  "model": spec.model, "precision": spec.precision, "engine_batch": spec.batch_size,
                  "stream_batch": min(options["stream_batch"], spec.batch_size)}
        options["summary_json"].write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if summary.interrupted:
        raise control.error or Interrupted(signal.SIGINT)
    if not summary.ok:
        click.get_current_context().exit(1)  # some inputs failed; the others are done


def _run_here(items: list[BatchItem], unit: BatchUnit, control: RunControl,
              on_result: Callable[[ItemResult], None] | None) -> BatchSummary:
    """All inputs in this process (threads), its engines built first."""
    with unit.open() as opened:
        summary = run_batch(items, opened.engine_for_stream, unit.options, opened.open_source, control, on_result)
    summary.engines = opened.engine_stats()
    summary.engine_build_s = opened.build_s
    return summary
