"""The streaming pipeline. Entry point: `effdet_video.pipeline.runner.run_pipeline(source, engine, sinks,
options, control) -> RunStats`; `core.control.RunControl` stops a run, `stats.RunStats` describes it."""
