"""Benchmark code behind `effdet-video bench`: engine timing, peers (rwightman's effdet, naive loops),
engine start-up time, end-to-end video runs."""
