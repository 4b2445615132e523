"""The infeed ring's saturation meter: when the GPU, not the caller, bounds a run (engine/infeed.py)."""
from __future__ import annotations

from effdet_video.engine.infeed import SaturationMeter


def _meter(run: int) -> tuple[SaturationMeter, list[int]]:
    calls: list[int] = []
    return SaturationMeter(run, lambda: calls.append(1)), calls


def test_saturated_only_after_a_whole_run_of_waits_and_said_once():
    meter, calls = _meter(3)
    for waited in (True, True, False, True, True):  # a submission that found its slot done resets the run
        meter.record(waited)
    assert calls == []
    meter.record(True)
    assert calls == [1]
    for _ in range(10):
        meter.record(True)
    assert calls == [1]


def test_a_caller_that_never_waits_is_never_saturated():
    meter, calls = _meter(1)
    for _ in range(100):
        meter.record(False)
    assert calls == []
