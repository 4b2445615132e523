"""Multi-object tracking as a pure algorithm (numpy and scipy only, no pipeline or torch): ByteTrack's
two-pass association over a constant-velocity Kalman filter, with every duration in seconds of the
frames' own timestamps, so that variable frame rates and dropped frames change no identity.
Entry point: `byte_tracker.ByteTracker(TrackerSettings()).update(boxes, scores, class_ids, seconds)`."""
