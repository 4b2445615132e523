"""The CUDA engine: the detection graph compiled (engine cache, see cache.py), captured as one CUDA graph
at its static batch shape, fed through a ring of pinned slots with several batches in flight.
EFFDET_VIDEO_COMPILER=eager skips compilation.

Quick start: an engine of a small batch (policy.prefers_quick_start: `run`, `live`) whose compiled
network is cached starts on the eager graph, so the first detections come seconds earlier (loading
imports torch's compiler stack). A background thread loads the compiled network, captures it and swaps
it in between two batches, but only once the GPU bounds the run (SATURATED_RUN submissions in a row
waited for it) or a benchmark asks (settle): the load's seconds of Python hold the GIL that the decode
and encode threads need, and slowed decode-bound runs while the compiled graph could gain them nothing
(docs/performance.md has the figures)."""
from __future__ import annotations

import os
import threading
import time

import numpy as np
import torch

from effdet_video.engine import cache
from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections
from effdet_video.engine.graph import build_detection_graph, host_nms, model_config
from effdet_video.engine.infeed import InfeedRing, SaturationMeter
from effdet_video.engine.policy import autotunes_cudnn, prefers_quick_start
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError

DTYPES = {"auto": torch.float16, "fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
DEFAULT_COMPILER = os.environ.get("EFFDET_VIDEO_COMPILER", "inductor")
IN_FLIGHT = 3
SATURATED_RUN = 16


class CudaEngine(Engine):
    def __init__(self, spec: EngineSpec, device: str = "cuda", compiler: str = DEFAULT_COMPILER,
                 capture: bool = True, slots: int = IN_FLIGHT) -> None:
        self._started = time.perf_counter()
        self.spec = spec
        self.device = device = str(torch.device(device if ":" in device else f"{device}:0"))
        self.config = model_config(spec)
        self.batch_size = spec.batch_size
        self.image_size = self.config.image_size
        self.max_det = spec.max_det
        torch.cuda.set_device(device)
        torch.backends.cudnn.benchmark = autotunes_cudnn(spec.batch_size)
        dtype = DTYPES[spec.precision]
        if dtype == torch.float32:  # fp32 means fp32: TF32 matrix units would cost ~1e-3 relative error
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        height, width = self.image_size
        batch = spec.batch_size
        self._static_inputs = (
            torch.zeros((batch, height, width, 3), dtype=torch.uint8, device=device),
            torch.tensor([[height, width]] * batch, dtype=torch.int32, device=device),
            torch.ones((batch,), dtype=torch.float32, device=device),
        )
        cache.use_kernel_caches()
        self._runner, self.build_info, compile_later = cache.prepare_graph(
            compiler, lambda: build_detection_graph(spec, self.config, dtype, mode=spec.nms_mode).to(device),
            self._static_inputs, quick_start=prefers_quick_start(batch))
        warm_up_started = time.perf_counter()
        # (CUDA graph or None when not captured, its output tensors); replaced whole by the compiled one
        self._active = self._warm_up_and_capture(capture)
        self.build_info["warm_up_and_capture_s"] = round(time.perf_counter() - warm_up_started, 3)
        self._upgrade: threading.Thread | None = None
        self._upgrade_lock = threading.Lock()
        self._retired: tuple = ()
        if compile_later is not None:
            self._upgrade = threading.Thread(target=self._change_to_compiled, args=(compile_later, capture),
                                             name="effdet-engine-compile", daemon=True)
        self._ring = None
        if spec.nms_mode != "none":  # raw head outputs are megabytes an image: timed on device only
            meter = SaturationMeter(SATURATED_RUN, self._start_upgrade) if compile_later is not None else None
            self._ring = InfeedRing(
                [(t.shape, t.dtype) for t in self._static_inputs],
                [(t.shape, t.dtype) for t in self._active[1]],
                self._launch, device, slots, meter)
        self.build_info["captured"] = self._active[0] is not None
        self.build_info["build_s"] = round(time.perf_counter() - self._started, 3)

    def _run(self) -> tuple[torch.Tensor, ...]:
        outputs = self._runner(*self._static_inputs)
        return tuple(outputs) if isinstance(outputs, (tuple, list)) else (outputs,)

    @torch.inference_mode()
    def _warm_up_and_capture(self, capture: bool) -> tuple[torch.cuda.CUDAGraph | None, tuple[torch.Tensor, ...]]:
        """Warm up on a side stream (cuDNN/Triton autotuning happens here), then capture one replay."""
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                outputs = self._run()
        side.synchronize()
        if not capture:
            return None, outputs
        graph = torch.cuda.CUDAGraph()
        # A capture stream of this engine's device: torch's default one is created once, on whichever device
        # was current then, and a second engine on another GPU would capture nothing. thread_local: CUDA
        # calls of other threads (the infeed of a running engine) must not invalidate this capture.
        with torch.cuda.graph(graph, stream=torch.cuda.Stream(self.device), capture_error_mode="thread_local"):
            outputs = self._run()
        return graph, outputs

    def _change_to_compiled(self, compile_network, capture: bool) -> None:
        """The quick start's background thread: load the compiled network, warm up and capture it, and make
        it the graph of the next batch. The eager graph keeps running meanwhile (its replays read the
        same static inputs; the warm-up's reads of them while a launch writes them only give throw-away
        outputs). On failure the engine stays eager and says so."""
        try:
            torch.cuda.set_device(self.device)
            self.build_info.update(compile_network())
            compiled = self._warm_up_and_capture(capture)
            # the eager graph stays alive until close(): a batch launched on it may still be copying out
            self._retired, self._active = self._active, compiled
            self.build_info.update(compiler="inductor", compiled_after_s=round(time.perf_counter() - self._started, 3))
        except Exception as error:  # noqa: BLE001 - the eager graph is a working engine
            self.build_info.update(compile_error=cache.compile_failure(error))

    def _start_upgrade(self) -> None:
        with self._upgrade_lock:
            if self._upgrade is not None and self._upgrade.ident is None:
                self.build_info["compile_started_s"] = round(time.perf_counter() - self._started, 3)
                self._upgrade.start()

    def settle(self) -> None:
        """Change to the final graph now and wait until it runs (benchmarks time that one)."""
        self._start_upgrade()
        self._join_upgrade()

    def _join_upgrade(self) -> None:
        with self._upgrade_lock:
            started = self._upgrade is not None and self._upgrade.ident is not None
        if started:
            self._upgrade.join()

    def _launch(self, device_inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        """On the current (compute) stream: load the slot's inputs into the graph's, run, return outputs."""
        for static, slot_input in zip(self._static_inputs, device_inputs):
            static.copy_(slot_input, non_blocking=True)
        graph, outputs = self._active
        if graph is not None:
            graph.replay()
            return outputs
        with torch.inference_mode():
            return self._run()

    def run_on_device(self) -> None:
        """One replay on the inputs already on the device (network/graph-only timing in `bench`)."""
        graph, _ = self._active
        if graph is not None:
            graph.replay()
        else:
            with torch.inference_mode():
                self._run()

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        if self._ring is None:
            raise UserError("NMS mode 'none' measures the network only; it returns no detections")
        arrays = (batch.images, np.asarray(batch.valid_hw, dtype=np.int32),
                  np.asarray(batch.image_scales, dtype=np.float32))
        if len(batch.images) > self.batch_size:
            raise ValueError(f"batch of {len(batch.images)} frames for an engine of batch {self.batch_size}")
        return self._ring.submit(arrays, batch.count, self._finish)

    def _finish(self, host_outputs: tuple[torch.Tensor, ...], count: int) -> DetectionBatch:
        if self.spec.nms_mode == "host":
            *candidates, scales = host_outputs
            detections, num_valid = host_nms(tuple(candidates), scales, self.config, self.max_det)
        else:
            detections, num_valid = host_outputs
        return DetectionBatch(detections.float().numpy().copy(), num_valid.int().numpy().copy(), count)

    def close(self) -> None:
        self._join_upgrade()
        if self._ring is not None:
            self._ring.drain()
        self._active = self._retired = (None, ())
