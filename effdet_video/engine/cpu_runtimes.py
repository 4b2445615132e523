"""Runtimes that run the CPU engine's exported ONNX graph: ONNX Runtime and OpenVINO (optional extras).

Both take the graph's three inputs (uint8 images, valid_hw, image_scales) as numpy arrays and return its
outputs as numpy arrays, in the graph's output order.
"""
from __future__ import annotations

import importlib.util
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable

import numpy as np

RUNTIMES = ("onnxruntime", "openvino")
# What each runtime needs importable; exporting a graph also needs torch.onnx's dynamo exporter's packages.
RUNTIME_MODULES = {"onnxruntime": ("onnxruntime",), "openvino": ("openvino",)}
EXPORT_MODULES = ("onnx", "onnxscript")


def installed(modules: tuple[str, ...]) -> bool:
    return all(importlib.util.find_spec(name) is not None for name in modules)


class OnnxRuntimeSession:
    """ONNX Runtime's CPU execution provider, all graph optimisations, `threads` intra-op threads that
    sleep rather than spin between runs: beside the pipeline's decode and encode threads, spinning workers
    took the cores from them and made the demo's pipeline on shared cores more than twice as slow.

    With `streams` > 1 the threads are split among that many sessions, each run by a worker thread of its
    own (ONNX Runtime releases the GIL while it runs), so that several batches run at once, as OpenVINO's
    streams do: a small model keeps few threads busy, and separate runs need no synchronisation."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int, precision: str, streams: int = 1) -> None:
        import onnxruntime

        if precision != "fp32":
            raise ValueError(f"ONNX Runtime's CPU engine runs fp32, not {precision}")
        self.streams = max(1, min(streams, threads))
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads // self.streams
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._sessions = [onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                          for _ in range(self.streams)]
        self._names = [node.name for node in self._sessions[0].get_inputs()]
        self._workers = [ThreadPoolExecutor(1, thread_name_prefix="onnxruntime") for _ in range(self.streams)]
        self._next = 0
        self.version = onnxruntime.__version__

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self.start(*inputs)()

    def start(self, *inputs: np.ndarray) -> Callable[[], list[np.ndarray]]:
        """Run on the next session: at once on this thread with one stream, else on its worker (the inputs
        copied, so the caller may reuse them); the result's getter."""
        feed = dict(zip(self._names, inputs))
        if self.streams == 1:
            outputs = self._sessions[0].run(None, feed)
            return lambda: outputs
        index = self._next
        self._next = (index + 1) % self.streams
        feed = {name: array.copy() for name, array in feed.items()}
        return self._workers[index].submit(self._sessions[index].run, None, feed).result

    def close(self) -> None:
        for worker in self._workers:
            worker.shutdown(wait=True)


class _OpenVinoRun:
    """One run of an infer request; `outputs()` waits for it and copies its outputs out (once)."""

    def __init__(self, request, outputs) -> None:
        self._request, self._output_ports, self._outputs = request, outputs, None

    def outputs(self) -> list[np.ndarray]:
        if self._outputs is None:
            self._request.wait()
            self._outputs = [np.array(self._request.get_tensor(port).data) for port in self._output_ports]
        return self._outputs


class OpenVinoSession:
    """OpenVINO's CPU plugin on `threads` threads split among `streams` parallel infer requests (1: the
    latency hint, every thread on one run); fp32, or bf16 where the CPU has it natively (OpenVINO would
    otherwise pick bf16 by itself on AMX machines: fp32 is asked for explicitly). Its compiled blobs are
    cached beside the ONNX file."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int, precision: str, streams: int = 1) -> None:
        import openvino

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO's CPU engine runs fp32 or bf16, not {precision}")
        core = openvino.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("this CPU has no native bf16")
        core.set_property({"CACHE_DIR": str(path.parent / "openvino")})
        config = {"INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": streams,
                  "PERFORMANCE_HINT": "THROUGHPUT" if streams > 1 else "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self._compiled = core.compile_model(str(path), "CPU", config)
        self.streams = int(self._compiled.get_property("NUM_STREAMS"))
        self._requests = [self._compiled.create_infer_request() for _ in range(self.streams)]
        self._runs: list[_OpenVinoRun | None] = [None] * self.streams
        self._next = 0
        self.version = openvino.__version__

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self.start(*inputs)()

    def start(self, *inputs: np.ndarray) -> Callable[[], list[np.ndarray]]:
        """Start a run on the next request (its previous run's outputs are copied out first, should its
        caller not have collected them yet); the inputs are copied, so the caller may reuse them."""
        index = self._next
        self._next = (index + 1) % self.streams
        previous = self._runs[index]
        if previous is not None:
            previous.outputs()
        request = self._requests[index]
        for port, array in enumerate(inputs):
            request.get_input_tensor(port).data[...] = array
        request.start_async()
        run = _OpenVinoRun(request, self._compiled.outputs)
        self._runs[index] = run
        return run.outputs

    def close(self) -> None:
        for request in self._requests:
            request.wait()


def open_session(runtime: str, path: Path, threads: int, precision: str, streams: int = 1):
    """The runtime's session for the ONNX file at `path`, running up to `streams` batches at once."""
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(path, threads, precision, streams)
    if runtime == "openvino":
        return OpenVinoSession(path, threads, precision, streams)
    raise ValueError(f"unknown CPU runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})")
