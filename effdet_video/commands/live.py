"""`effdet-video live SOURCE`: detection on a camera, a network stream or a file played in real time, with
latest-frame semantics (stale frames dropped and counted), a local preview page, recordings and JSON
Lines, and per-frame latency (capture -> annotated frame out) reported at the end."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import click

from effdet_video.commands.common import (
    debug_option,
    detection_filter,
    detection_options,
    engine_options,
    engine_spec,
    model_labels,
    track_options,
    tracking,
)
from effdet_video.errors import UserError
from effdet_video.pipeline.live_runner import LiveOutputs, run_live
from effdet_video.sources.live_source import LiveOptions, parse_location


def parse_image_size(text: str | None) -> tuple[int, int] | None:
    """'512' -> (512, 512); '384x640' -> (384, 640) as height x width; multiples of 128 as the model needs."""
    if text is None:
        return None
    try:
        parts = [int(part) for part in text.lower().split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or any(p <= 0 or p % 128 for p in parts):
        raise UserError(f"--image-size {text!r}: expected N or HxW, multiples of 128 (e.g. 512 or 384x640)")
    return (parts[0], parts[-1])


def _say(message: str) -> None:
    click.echo(f"effdet-video live: {message}", err=True)


def _summary(result: dict[str, Any]) -> str:
    latency = result["latency"]
    line = (f"{result['ended']}; {latency['frames']} frames out of {result['decoded']} decoded "
            f"({result['dropped']} dropped under load, {result['dropped_warmup']} during warm-up), "
            f"{latency['fps']:.1f} fps")
    if latency["p50_ms"] is not None:
        line += (f"; latency p50 {latency['p50_ms']:.1f} ms, p99 {latency['p99_ms']:.1f} ms, "
                 f"max {latency['max_ms']:.1f} ms")
    if "drift" in latency:
        line += f", drift {latency['drift']['slope_ms_per_min']:+.2f} ms/min"
    return line


@click.command("live")
@click.argument("source")
@click.option("-o", "--output", default=None, metavar="FILE|URL",
              help="Record the annotated video to a file (.mp4 .mkv .mov), or send it to a URL "
                   "(rtmp://, rtsp://, udp://, srt://, ...).")
@click.option("--output-format", default=None, help="Container for a URL output [default: from the scheme].")
@click.option("--jsonl", default=None, metavar="FILE|-", help="Detections as JSON Lines ('-' for stdout).")
@click.option("--preview", is_flag=True, help="Serve a preview page with the overlay and live figures.")
@click.option("--preview-host", default="127.0.0.1", show_default=True, help="Address the preview binds to.")
@click.option("--preview-port", type=click.IntRange(0, 65535), default=8080, show_default=True,
              help="Port of the preview (0 picks a free one).")
@click.option("--stats-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write the final report (latency p50/p99/max, drift, dropped frames) here.")
@click.option("--tracks-json", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --track: write one summary per track (id, class, first/last pts, frames, score) at the end.")
@click.option("--realtime", is_flag=True, help="Play a file SOURCE at its frame rate, as a live source.")
@click.option("--loop", is_flag=True, help="With --realtime: replay the file at its end.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Stop after this many seconds.")
@click.option("--reconnect", is_flag=True, help="Reopen a network source that fails or ends, with backoff.")
@click.option("--reconnect-max", type=click.IntRange(min=1), default=10, show_default=True,
              help="Consecutive failed reconnect attempts before giving up.")
@click.option("--source-timeout", type=click.FloatRange(min=0.1), default=10.0, show_default=True,
              help="Seconds without data before a network source counts as lost.")
@click.option("--depth", type=click.IntRange(min=1), default=1, show_default=True,
              help="Frames inside the pipeline at once (1: lowest latency, 2+: more throughput).")
@click.option("--image-size", default=None, metavar="N|HxW", help="Network input size [default: the model's].")
@engine_options
@detection_options
@track_options
@click.option("--overwrite", is_flag=True, help="Replace existing output files.")
@debug_option
def command(source: str, **options: Any) -> None:
    """Detect objects in a live SOURCE: /dev/videoN, an rtsp/rtmp/http/udp/srt URL, or a file with --realtime.

    Ctrl-C ends the run; recordings are finalised and stay valid."""
    location = parse_location(source)
    track = tracking(options)
    if options["loop"] and not options["realtime"]:
        raise UserError("--loop needs --realtime (it replays a file)")
    if location.kind == "file" and not options["realtime"]:  # the source refuses it too, in its own words
        raise UserError(f"{location.url} is a file: pass --realtime to play it as a live source, or use "
                        "`effdet-video FILE -o OUT` to process every frame")
    outputs = LiveOutputs(output=options["output"], output_format=options["output_format"], jsonl=options["jsonl"],
                          preview=options["preview"], preview_host=options["preview_host"],
                          preview_port=options["preview_port"], stats_json=options["stats_json"],
                          tracks_json=options["tracks_json"], overwrite=options["overwrite"])
    if not (outputs.output or outputs.jsonl or outputs.preview or outputs.stats_json or outputs.tracks_json):
        raise UserError("nothing to output: pass --preview, -o/--output, --jsonl, --stats-json and/or --tracks-json")
    spec = dataclasses.replace(engine_spec(options, "live"), image_size=parse_image_size(options["image_size"]))
    live_options = LiveOptions(realtime=options["realtime"], loop=options["loop"], reconnect=options["reconnect"],
                               reconnect_max=options["reconnect_max"], timeout_s=options["source_timeout"],
                               depth=max(options["depth"], spec.batch_size))

    def build_engine():  # noqa: ANN202 - torch is imported only once the source is known good
        from effdet_video.engine.factory import build_engine as build

        return build(spec)

    result = run_live(location, live_options, build_engine, outputs, detection_filter(options), model_labels(options),
                      options["duration"], _say, track)
    _say(_summary(result))
