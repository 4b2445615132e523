"""The transforms between source and sinks: prepare, infer, track, annotate, and the frames' GPU canvas."""
