"""Options shared by the commands that run a detector (run, live, batch, bench), and their parsing.

Use the decorators on a click command, then build objects from its keyword arguments:
    @engine_options @detection_options @track_options @debug_option
    def command(**kwargs): spec = engine_spec(kwargs, "run"); keep = detection_filter(kwargs); track = tracking(kwargs)

Click's keyword arguments are read only in commands/ (the commands and these helpers): below it, every
setting travels as a typed object (EngineSpec, DetectionFilter, TrackingOptions, EncoderSettings, OutputPlan).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import click

from effdet_video.configs.labels import coco_labels, labels_for_weights
from effdet_video.engine.policy import Mode, cpu_streams, default_batch_size
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from effdet_video.sinks.factory import EncoderSettings
from effdet_video.sources.hw_decode import DECODERS, gpu_ids, nvdec_problem
from effdet_video.sources.source import VideoOpener, decode_threads_beside_encoder
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import TrackingOptions, tracking_options

F = Callable[..., Any]


class CliState:
    """Process-wide CLI switches that `cli.main` needs while reporting errors."""

    debug = False


def _enable_debug(_ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        CliState.debug = True


debug_option = click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_enable_debug,
                            help="Show full tracebacks on errors.")


def _stack(*decorators: F) -> F:
    def apply(function: F) -> F:
        for decorator in reversed(decorators):
            function = decorator(function)
        return function

    return apply


def _batch_size_help() -> str:
    """--batch-size's help, its defaults read from the engine policy (which holds them)."""
    return (f"Frames per engine batch [default: {default_batch_size('run', 'cuda')} on CUDA, "
            f"{default_batch_size('run', 'cpu')} on CPU; batch: {default_batch_size('batch', 'cuda')} on CUDA; "
            f"live: {default_batch_size('live', 'cuda')}].")


engine_options = _stack(
    click.option("--model", default="d0", show_default=True, help="EfficientDet variant: d0 .. d7x."),
    click.option("--weights", type=click.Path(dir_okay=False), default=None,
                 help="AutoML EfficientDet .h5 checkpoint."),
    click.option("--random-weights", is_flag=True, help="Seeded random weights (benchmarking only)."),
    click.option("--batch-size", type=click.IntRange(min=1), default=None,
                 help=_batch_size_help()),
    click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N."),
    click.option("--precision", default="auto", show_default=True,
                 type=click.Choice(["auto", "fp32", "fp16", "bf16"]), help="Engine precision."),
    click.option("--max-det", type=click.IntRange(min=1), default=100, show_default=True,
                 help="Most detections kept per frame."),
)

detection_options = _stack(
    click.option("--score-threshold", type=click.FloatRange(0.0, 1.0), default=0.4, show_default=True,
                 help="Drop detections scoring below this."),
    click.option("--classes", default=None, metavar="LIST",
                 help="Keep only these classes: comma-separated COCO names or ids, e.g. person,car,3."),
)

encoder_options = _stack(
    click.option("--codec", default=None, help="Video encoder [default: from the extension, libx264 for .mp4]."),
    click.option("--crf", type=click.IntRange(0, 63), default=20, show_default=True, help="Encoder quality."),
    click.option("--preset", default="veryfast", show_default=True, help="Encoder speed preset (x264/x265)."),
    click.option("--no-audio", is_flag=True, help="Leave the audio out (by default it is copied untouched)."),
)

track_options = _stack(
    click.option("--track", is_flag=True,
                 help="Track objects (ByteTrack): a track_id per detection, stable across frames."),
    click.option("--track-patience", type=click.FloatRange(min=0), default=1.0, show_default=True,
                 metavar="SECONDS", help="How long a track that lost its object waits for it to come back."),
    click.option("--trails", is_flag=True, help="With --track: draw each track's last 2 s of motion."),
)

decoder_option = click.option(
    "--decoder", type=click.Choice(DECODERS), default="auto", show_default=True,
    help="Video decoding: nvdec (the engine GPU's hardware decoder, through FFmpeg), cpu (FFmpeg's software "
         "decoders), auto (NVDEC when the engine runs on a GPU whose NVDEC decodes the input, else the CPU).")


def encoder_settings(options: dict[str, Any]) -> EncoderSettings:
    """The EncoderSettings of @encoder_options."""
    return EncoderSettings(codec=options["codec"], crf=options["crf"], preset=options["preset"],
                           audio=not options["no_audio"])


def video_opener(decoder: str, devices: Sequence[str], writes_video: bool = False) -> VideoOpener:
    """The source opener for --decoder and the engines' resolved `devices`. NVDEC decodes on the engines'
    own GPUs, round robin over them, and never when the engines run on the CPU: there 'auto' means the CPU
    and 'nvdec' is an error. 'nvdec' on a GPU without NVDEC fails here, before any input is opened.

    'auto' takes NVDEC wherever the engines run on a GPU: its frames stay in GPU memory, are letterboxed
    there and, where video is written, drawn on there, so that the cores are left to the encoder (and,
    detections only, to many streams at once; docs/performance.md has the figures). Where the run
    `writes_video`, the CPU decoder takes half the cores and leaves the rest to the encoder
    (decode_threads_beside_encoder)."""
    gpus = gpu_ids(devices)
    threads = decode_threads_beside_encoder() if writes_video else 0
    if decoder == "cpu" or (decoder == "auto" and not gpus):
        return VideoOpener("cpu", decode_threads=threads)
    if not gpus:
        raise UserError("--decoder nvdec decodes on the engine's GPU, but the engine runs on the CPU "
                        "(use --device cuda, or --decoder cpu)")
    if decoder == "nvdec":
        for gpu_id in gpus:
            if problem := nvdec_problem(gpu_id):
                raise UserError(f"--decoder nvdec: {problem} (use --decoder cpu or auto)")
    return VideoOpener(decoder, gpus, frames_on_gpu=True, decode_threads=threads)


def single_video_opener(options: dict[str, Any], writes_video: bool = False) -> VideoOpener:
    """`video_opener` for a command with one engine (--device, --decoder). The device is resolved (which
    imports torch) only where NVDEC may decode, so that `--device cpu` and `--decoder cpu` do not wait for it."""
    device = options["device"]
    if options["decoder"] != "cpu" and device != "cpu":
        from effdet_video.engine import factory  # torch is imported only when the GPU may decode

        device = factory.resolve_device(device)
    return video_opener(options["decoder"], [device], writes_video)


def engine_spec(options: dict[str, Any], mode: Mode) -> EngineSpec:
    """The EngineSpec of a command's engine options ('auto' device resolved, for the batch default: the
    engine policy's for command `mode` unless --batch-size gives one)."""
    from effdet_video.engine import factory  # torch is imported only when an engine is needed

    device = factory.resolve_device(options["device"])
    return EngineSpec(
        model=options["model"],
        weights=options["weights"],
        random_weights=options["random_weights"],
        batch_size=options["batch_size"] or default_batch_size(mode, device),
        device=device,
        precision=options["precision"],
        max_det=options["max_det"],
        cpu_streams=cpu_streams(mode, device),
    )


def model_labels(options: dict[str, Any]) -> dict[int, str]:
    """Class names of the model the options select: a labels file beside the weights (our own trained
    models), else COCO's (AutoML's checkpoints)."""
    from effdet_video.models.checkpoints import packaged_weights

    if options["random_weights"]:
        return coco_labels()
    weights = options["weights"] or packaged_weights(options["model"])
    return labels_for_weights(Path(weights) if weights else None)


def parse_classes(text: str | None, labels: dict[int, str]) -> frozenset[int] | None:
    """'person, car,3' -> {1, 3}; unknown names are a UserError listing what went wrong."""
    if text is None:
        return None
    by_name = {name.lower(): class_id for class_id, name in labels.items()}
    ids: set[int] = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isdigit():
            ids.add(int(item))
        elif item.lower() in by_name:
            ids.add(by_name[item.lower()])
        else:
            raise UserError(f"unknown class {item!r} in --classes (use the model's class names, e.g. "
                            f"{', '.join(list(labels.values())[:3])}, or ids)")
    if not ids:
        raise UserError("--classes is empty")
    return frozenset(ids)


def detection_filter(options: dict[str, Any]) -> DetectionFilter:
    return DetectionFilter(score_threshold=options["score_threshold"],
                           class_ids=parse_classes(options["classes"], model_labels(options)),
                           max_det=options["max_det"])


def tracking(options: dict[str, Any]) -> TrackingOptions | None:
    """The tracking of --track (None without it); --trails and --tracks-json need --track."""
    if not options["track"]:
        for name in ("trails", "tracks_json"):
            if options.get(name):
                raise UserError(f"--{name.replace('_', '-')} needs --track")
        return None
    return tracking_options(options["score_threshold"], options["track_patience"], options["trails"])


# The options of the commands that read video files and write their outputs (`run`, `batch`).
file_options = _stack(engine_options, decoder_option, detection_options, track_options, encoder_options)
