"""`effdet-video run INPUT -o OUTPUT` (also plain `effdet-video INPUT -o OUTPUT`): annotate one file."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from effdet_video.commands.common import (debug_option, decoder_option, detection_filter, detection_options,
                                          encoder_options, engine_options, engine_spec, model_labels,
                                          single_video_opener, track_options, tracking)
from effdet_video.errors import UserError
from effdet_video.pipeline.control import RunControl, stop_on_signals
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.pipeline.stats import RunStats
from effdet_video.stages.base import FrameSink
from effdet_video.stages.detection_sinks import CocoResultsSink, JsonLinesSink, TracksJsonSink
from effdet_video.stages.output_file import check_output_path
from effdet_video.stages.source import VideoInfo
from effdet_video.stages.video_sink import VideoFileSink


def planned_outputs(input_path: Path, options: dict[str, Any]) -> dict[str, Path]:
    """Which files the run writes, checked before anything is opened."""
    option_names = {"output": "output", "jsonl": "jsonl", "coco": "coco", "tracks": "tracks_json"}
    outputs = {kind: Path(options[name]) for kind, name in option_names.items() if options[name]}
    if options["no_video"]:
        if "output" in outputs:
            raise UserError("--no-video writes no video: drop -o/--output, or drop --no-video")
        if not outputs:
            raise UserError("--no-video needs --jsonl and/or --coco (or --tracks-json) to write detections to")
    elif "output" not in outputs:
        raise UserError("missing -o/--output (or use --no-video with --jsonl/--coco)")
    if len({path.resolve() for path in outputs.values()}) < len(outputs):
        raise UserError("two outputs have the same path")
    for path in outputs.values():
        check_output_path(path, (input_path,), overwrite=options["overwrite"])
    return outputs


def open_sinks(outputs: dict[str, Path], info: VideoInfo, options: dict[str, Any],
               labels: dict[int, str] | None = None) -> list[FrameSink]:
    """The sinks of `outputs`; if one cannot be opened, those already open are removed again."""
    sinks: list[FrameSink] = []
    try:
        for kind, path in outputs.items():
            if kind == "output":
                sinks.append(VideoFileSink(path, info, codec=options["codec"], crf=options["crf"],
                                           preset=options["preset"], audio=not options["no_audio"]))
            elif kind == "jsonl":
                sinks.append(JsonLinesSink(path, labels))
            elif kind == "tracks":
                sinks.append(TracksJsonSink(path, labels))
            else:
                sinks.append(CocoResultsSink(path))
    except BaseException:
        for sink in sinks:
            sink.abort()
        raise
    return sinks


def report(stats: RunStats, quiet: bool) -> None:
    if stats.skipped_packets:
        click.echo(f"warning: skipped {stats.skipped_packets} corrupt packets", err=True)
    if not quiet:
        click.echo(stats.summary(), err=True)


@click.command("run")
@click.argument("input_path", metavar="INPUT", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
              help="Annotated video; container from the extension (.mp4 .mov .mkv .m4v .webm).")
@click.option("--jsonl", type=click.Path(dir_okay=False), default=None,
              help="Also write detections as JSON Lines, one object per frame.")
@click.option("--coco", type=click.Path(dir_okay=False), default=None,
              help="Also write detections as a COCO results JSON (image_id = frame index).")
@click.option("--tracks-json", type=click.Path(dir_okay=False), default=None,
              help="With --track: also write one summary per track (id, class, first/last pts, frames, score).")
@click.option("--no-video", is_flag=True, help="Write detections only (needs --jsonl, --coco or --tracks-json).")
@engine_options
@decoder_option
@detection_options
@track_options
@encoder_options
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar and no timing summary.")
@debug_option
def command(input_path: Path, **options: Any) -> None:
    """Detect objects in INPUT and write an annotated copy (audio and timing kept) and/or detections."""
    track = tracking(options)
    outputs = planned_outputs(input_path, options)
    source = single_video_opener(options, encodes_video="output" in outputs)(input_path)
    try:
        from effdet_video.engine import factory  # torch is imported once the input is known good (or for --decoder)

        with factory.build_engine(engine_spec(options)) as engine:
            sinks = open_sinks(outputs, source.info, options, model_labels(options))
            pipeline_options = PipelineOptions(detection_filter=detection_filter(options), labels=model_labels(options),
                                               progress=not options["quiet"] and sys.stderr.isatty(),
                                               tracking=track)
            control = RunControl()
            with stop_on_signals(control):
                stats = run_pipeline(source, engine, sinks, pipeline_options, control)
    finally:
        source.close()
    report(stats, options["quiet"])
