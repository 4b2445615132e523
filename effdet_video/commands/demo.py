"""`effdet-video demo -o OUTDIR`: the whole pipeline out of the box, with the model shipped in the package.

Makes a short synthetic clip of moving objects (demo.mp4, ground truth in demo.mp4.gt.json), runs it
through the pipeline with the shipped demo model (demo-annotated.mp4, demo-detections.jsonl) and prints
the AP@0.5 against the known ground truth.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import click

from effdet_video.commands.common import debug_option
from effdet_video.errors import UserError

DEMO_CLIP_SEED = 7
DEMO_FRAMES = 75
DEMO_SCORE_THRESHOLD = 0.3


@click.command("demo")
@click.option("-o", "--output-dir", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Folder for demo.mp4, demo-annotated.mp4 and demo-detections.jsonl (created if missing).")
@click.option("--device", default="auto", show_default=True, help="auto | cpu | cuda | cuda:N")
@click.option("--frames", type=click.IntRange(1, 10_000), default=DEMO_FRAMES, show_default=True,
              help="Length of the clip in frames (25 fps).")
@debug_option
def command(output_dir: Path, device: str, frames: int, **_: object) -> None:
    """Make a clip with moving objects and detect them with the shipped demo model."""
    from effdet_video.configs.labels import labels_for_weights
    from effdet_video.demo import clip_eval, synth_clip
    from effdet_video.demo.scene_kit import load_scene_kit
    from effdet_video.engine.factory import resolve_device
    from effdet_video.engine.policy import cpu_streams, default_batch_size
    from effdet_video.engine.spec import EngineSpec
    from effdet_video.models.checkpoints import DEMO_MODEL, demo_weights

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"cannot create output folder {output_dir}: {error.strerror}") from None
    start = time.perf_counter()
    clip = output_dir / "demo.mp4"
    truth = synth_clip.write_clip(load_scene_kit(), clip, seed=DEMO_CLIP_SEED, num_frames=frames)
    resolved = resolve_device(device)
    spec = EngineSpec(model=DEMO_MODEL, weights=str(demo_weights()),
                      batch_size=default_batch_size("demo", resolved), device=resolved,
                      cpu_streams=cpu_streams("demo", resolved))
    jsonl = output_dir / "demo-detections.jsonl"
    annotated = output_dir / "demo-annotated.mp4"
    stats = clip_eval.detect_clip(clip, spec, jsonl, labels_for_weights(demo_weights()), annotated=annotated,
                                  score_threshold=DEMO_SCORE_THRESHOLD)
    metrics = clip_eval.clip_map(truth, jsonl)
    click.echo(stats.summary(), err=True)
    click.echo(json.dumps({"clip": str(clip), "annotated": str(annotated), "detections": str(jsonl),
                           "frames": frames, "map50": round(metrics["map"], 4),
                           "seconds": round(time.perf_counter() - start, 1)}))
