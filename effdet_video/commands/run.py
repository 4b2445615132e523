"""`effdet-video run INPUT -o OUTPUT` (also plain `effdet-video INPUT -o OUTPUT`): annotate one file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from effdet_video.commands.common import (
    debug_option,
    detection_filter,
    encoder_settings,
    engine_spec,
    file_options,
    model_labels,
    single_video_opener,
    tracking,
)
from effdet_video.core.control import RunControl, stop_on_signals
from effdet_video.errors import UserError
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.pipeline.stats import RunStats
from effdet_video.sinks.base import FrameSink
from effdet_video.sinks.factory import OutputPlan, SinkFactory
from effdet_video.sinks.image_sink import check_image_output
from effdet_video.sinks.output_file import check_free_space, check_output_path
from effdet_video.sources.source import VideoFileSource


def planned_outputs(input_path: Path, options: dict[str, Any]) -> OutputPlan:
    """Which files the run writes, checked before anything is opened."""
    option_names = {"video": "output", "jsonl": "jsonl", "coco": "coco", "tracks": "tracks_json"}
    plan = OutputPlan(**{kind: Path(options[name]) for kind, name in option_names.items() if options[name]})
    outputs = plan.paths()
    if options["no_video"]:
        if plan.video:
            raise UserError("--no-video writes no video: drop -o/--output, or drop --no-video")
        if not outputs:
            raise UserError("--no-video needs --jsonl and/or --coco (or --tracks-json) to write detections to")
    elif not plan.video:
        raise UserError("missing -o/--output (or use --no-video with --jsonl/--coco)")
    if len({path.resolve() for path in outputs.values()}) < len(outputs):
        raise UserError("two outputs have the same path")
    for path in outputs.values():
        check_output_path(path, (input_path,), overwrite=options["overwrite"])
    return plan


# Rough output sizes for the free-space check (a floor, see check_free_space): an annotated copy at the
# default quality is of the order of the input's size, half of it is asked for; a frame of JSON Lines
# takes at least 40 bytes, a COCO entry about 90 (one per frame counted).
VIDEO_SIZE_FRACTION = 0.5
TEXT_BYTES_PER_FRAME = {"jsonl": 40, "coco": 90, "tracks": 2}


def output_needs(plan: OutputPlan, input_path: Path, frames: int | None) -> dict[Path, int]:
    """Bytes each output will take, roughly."""
    return {path: int(input_path.stat().st_size * VIDEO_SIZE_FRACTION) if kind == "video"
            else (frames or 0) * TEXT_BYTES_PER_FRAME[kind] for kind, path in plan.paths().items()}


def report(stats: RunStats, source: VideoFileSource, sinks: list[FrameSink], quiet: bool) -> None:
    """What the input lost and what the outputs could not keep (one warning line each), then the timing
    summary."""
    for line in [*source.warnings(), *(line for sink in sinks for line in sink.warnings())]:
        click.echo(f"warning: {line}", err=True)
    if not quiet:
        click.echo(stats.summary(), err=True)


@click.command("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Annotated video; container from the extension (.mp4 .mov .mkv .m4v .webm). For an image "
                   "INPUT, an image (.png .jpg ...).")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None,
              help="Also write detections as JSON Lines, one object per frame.")
@click.option("--coco", type=click.Path(dir_okay=False), default=None,
              help="Also write detections as a COCO results JSON (image_id = frame index).")
@click.option("--tracks-json", type=click.Path(dir_okay=False), default=None,
              help="With --track: also write one summary per track (id, class, first/last pts, frames, score).")
@click.option("--no-video", is_flag=True, help="Write detections only (needs --jsonl, --coco or --tracks-json).")
@file_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no timing summary.")
@debug_option
def command(input_path: Path, **options: Any) -> None:
    """Detect objects in INPUT and write an annotated copy (audio and timing kept) and/or detections."""
    track = tracking(options)
    plan = planned_outputs(input_path, options)
    labels = model_labels(options)
    open_sinks = SinkFactory(encoder_settings(options), labels)
    # Every option is checked before the input is opened and before any output or shared memory exists.
    pipeline_options = PipelineOptions(detection_filter=detection_filter(options), labels=labels,
                                       progress=not options["quiet"] and sys.stderr.isatty(), tracking=track)
    source = single_video_opener(options, writes_video=plan.video is not None)(input_path)
    try:
        if source.info.still_image and plan.video:
            check_image_output(plan.video)
        check_free_space(output_needs(plan, input_path, source.expected_frames))
        from effdet_video.engine import factory  # torch is imported once the input is known good (or for --decoder)

        with factory.build_engine(engine_spec(options, "run")) as engine:
            sinks = open_sinks(plan, source.info)
            control = RunControl()
            with stop_on_signals(control):
                stats = run_pipeline(source, engine, sinks, pipeline_options, control)
    finally:
        source.close()
    report(stats, source, sinks, options["quiet"])
