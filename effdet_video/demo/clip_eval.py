"""Accuracy through the whole video pipeline: a clip with known ground truth is decoded, letterboxed, run
through the engine and NMS, mapped back to frame pixels and written as JSON Lines by the same stages as
`effdet-video run`; the JSONL is then scored against the ground truth (COCO-style AP@0.5)."""
from __future__ import annotations

import json
from pathlib import Path

from effdet_video.engine.factory import build_engine
from effdet_video.engine.spec import EngineSpec
from effdet_video.pipeline.runner import PipelineOptions, run_pipeline
from effdet_video.pipeline.stats import RunStats
from effdet_video.sinks.factory import OutputPlan, SinkFactory
from effdet_video.sources.source import VideoFileSource
from effdet_video.stages.infer import DetectionFilter
from effdet_video.stages.track import TrackingOptions
from effdet_video.training.evaluate import mean_average_precision

EVAL_SCORE_THRESHOLD = 0.05  # low, as COCO evaluation wants the whole precision/recall curve


def detect_clip(clip: Path, spec: EngineSpec, jsonl: Path, labels: dict[int, str] | None = None,
                annotated: Path | None = None, score_threshold: float = EVAL_SCORE_THRESHOLD,
                tracking: TrackingOptions | None = None) -> RunStats:
    """Run `clip` through the pipeline, writing detections to `jsonl` (and an annotated video), with
    `tracking` their track ids."""
    source = VideoFileSource(clip)
    try:
        with build_engine(spec) as engine:
            sinks = SinkFactory(labels=labels)(OutputPlan(video=annotated, jsonl=jsonl), source.info)
            options = PipelineOptions(detection_filter=DetectionFilter(score_threshold=score_threshold),
                                      labels=labels, tracking=tracking)
            return run_pipeline(source, engine, sinks, options)
    finally:
        source.close()


def jsonl_results(jsonl: Path) -> list[dict]:
    """COCO results from the pipeline's JSON Lines; image_id = frame index + 1 (the ground truth's ids)."""
    results = []
    for line in Path(jsonl).read_text().splitlines():
        frame = json.loads(line)
        for det in frame["detections"]:
            x0, y0, x1, y1 = det["box"]
            results.append({"image_id": frame["index"] + 1, "category_id": det["class_id"], "score": det["score"],
                            "bbox": [x0, y0, x1 - x0, y1 - y0]})
    return results


def clip_map(ground_truth: dict, jsonl: Path) -> dict:
    """AP@0.5 of the pipeline's detections against the clip's ground truth (see `synth_clip.write_clip`)."""
    return mean_average_precision(ground_truth, jsonl_results(jsonl))
