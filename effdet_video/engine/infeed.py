"""Infeed/outfeed for a CUDA graph: a ring of pinned host slots, copies on their own streams.

Each slot owns pinned host inputs, device inputs, device outputs and pinned host outputs. A batch goes
    host thread: copy the caller's arrays into the slot's pinned inputs
    copy stream: H2D into the slot's device inputs                      -> event h2d_done
    compute stream: wait h2d_done, run the graph, copy its outputs into the slot -> event computed
    outfeed stream: wait computed, D2H into the slot's pinned outputs     -> event d2h_done
so the H2D of batch i+1 and the D2H of batch i-1 overlap the compute of batch i, and the host thread is
free as soon as the launches are queued. A slot is reused only after its previous batch's result has been
collected (done on demand), so in-flight data is never overwritten.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np
import torch

from effdet_video.engine.base import DetectionBatch, PendingDetections

TensorSpec = tuple[tuple[int, ...], torch.dtype]
Finish = Callable[[tuple[torch.Tensor, ...], int], DetectionBatch]


def _alloc(specs: Sequence[TensorSpec], device: torch.device | str, pinned: bool = False) -> tuple[torch.Tensor, ...]:
    return tuple(torch.empty(shape, dtype=dtype, device=device, pin_memory=pinned) for shape, dtype in specs)


@dataclasses.dataclass
class _Slot:
    host_inputs: tuple[torch.Tensor, ...]
    device_inputs: tuple[torch.Tensor, ...]
    device_outputs: tuple[torch.Tensor, ...]
    host_outputs: tuple[torch.Tensor, ...]
    h2d_done: torch.cuda.Event = dataclasses.field(default_factory=torch.cuda.Event)
    computed: torch.cuda.Event = dataclasses.field(default_factory=torch.cuda.Event)
    d2h_done: torch.cuda.Event = dataclasses.field(default_factory=lambda: torch.cuda.Event(blocking=True))
    pending: "SlotDetections | None" = None


class SlotDetections(PendingDetections):
    """A batch in flight in one slot; `result()` waits for its D2H and copies the rows out of the slot."""

    def __init__(self, slot: _Slot, count: int, finish: Finish) -> None:
        self._slot = slot
        self._count = count
        self._finish = finish
        self._result: DetectionBatch | None = None

    def done(self) -> bool:
        return self._result is not None or self._slot.d2h_done.query()

    def result(self) -> DetectionBatch:
        if self._result is None:
            self._slot.d2h_done.synchronize()
            self._result = self._finish(self._slot.host_outputs, self._count)
            self._slot.pending = None
        return self._result


class SaturationMeter:
    """Says once, on the `run`-th submission in a row that had to wait for the GPU, that the GPU is what
    bounds the caller. A wait now and then (a burst of frames, a stall of the consumer) resets it."""

    def __init__(self, run: int, on_saturated: Callable[[], None]) -> None:
        self._run = run
        self._waits = 0
        self._on_saturated: Callable[[], None] | None = on_saturated

    def record(self, waited: bool) -> None:
        self._waits = self._waits + 1 if waited else 0
        if self._waits >= self._run and self._on_saturated is not None:
            self._on_saturated, call = None, self._on_saturated
            call()


class InfeedRing:
    """`slots` batches in flight through `launch` (which runs on the compute stream and returns the
    graph's output tensors, valid until its next call); `meter` hears, per submission, whether its slot
    was still busy on the GPU."""

    def __init__(self, input_specs: Sequence[TensorSpec], output_specs: Sequence[TensorSpec],
                 launch: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]],
                 device: torch.device | str, slots: int = 3, meter: SaturationMeter | None = None) -> None:
        self._launch = launch
        self._meter = meter
        self._device = device
        self._copy_stream = torch.cuda.Stream(device)
        self._compute_stream = torch.cuda.Stream(device)
        self._outfeed_stream = torch.cuda.Stream(device)
        self._slots = [
            _Slot(_alloc(input_specs, "cpu", pinned=True), _alloc(input_specs, device),
                  _alloc(output_specs, device), _alloc(output_specs, "cpu", pinned=True))
            for _ in range(slots)
        ]
        self._next = 0

    def submit(self, arrays: Sequence[np.ndarray], count: int, finish: Finish) -> SlotDetections:
        """Queue one batch; `arrays` may be shorter than the slot along dim 0 (a partial batch: the
        remaining rows keep stale data, which the caller ignores via `count`)."""
        slot = self._slots[self._next]
        self._next = (self._next + 1) % len(self._slots)
        if slot.pending is not None:
            if self._meter is not None:
                self._meter.record(not slot.pending.done())
            slot.pending.result()  # frees the slot: its outputs are copied out before reuse
        for pinned, array in zip(slot.host_inputs, arrays):
            # NumPy's copy, one thread: torch's would wake its intra-op pool (a thread per core) on every
            # batch, and those threads spin afterwards on cores that the video encoder needs.
            np.copyto(pinned.numpy()[: len(array)], array)
        with torch.cuda.stream(self._copy_stream):
            for device_input, pinned in zip(slot.device_inputs, slot.host_inputs):
                device_input.copy_(pinned, non_blocking=True)
            slot.h2d_done.record()
        with torch.cuda.stream(self._compute_stream):
            self._compute_stream.wait_event(slot.h2d_done)
            outputs = self._launch(slot.device_inputs)
            for device_output, output in zip(slot.device_outputs, outputs):
                device_output.copy_(output, non_blocking=True)
            slot.computed.record()
        with torch.cuda.stream(self._outfeed_stream):
            self._outfeed_stream.wait_event(slot.computed)
            for pinned, device_output in zip(slot.host_outputs, slot.device_outputs):
                pinned.copy_(device_output, non_blocking=True)
            slot.d2h_done.record()
        slot.pending = SlotDetections(slot, count, finish)
        return slot.pending

    def drain(self) -> None:
        for slot in self._slots:
            if slot.pending is not None:
                slot.pending.result()
