"""Runtimes that run the CPU engine's exported ONNX graph: ONNX Runtime and OpenVINO (optional extras).

Both take the graph's three inputs (uint8 images, valid_hw, image_scales) as numpy arrays and return its
outputs as numpy arrays, in the graph's output order.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

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
    took the cores from them and made the demo's pipeline on shared cores more than twice as slow."""

    runtime = "onnxruntime"

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import onnxruntime

        if precision != "fp32":
            raise ValueError(f"ONNX Runtime's CPU engine runs fp32, not {precision}")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._names = [node.name for node in self._session.get_inputs()]
        self.version = onnxruntime.__version__

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        return self._session.run(None, dict(zip(self._names, inputs)))


class OpenVinoSession:
    """OpenVINO's CPU plugin, latency hint, `threads` threads; fp32, or bf16 where the CPU has it natively
    (OpenVINO would otherwise pick bf16 by itself on AMX machines: fp32 is asked for explicitly). Its
    compiled blobs are cached beside the ONNX file."""

    runtime = "openvino"

    def __init__(self, path: Path, threads: int, precision: str) -> None:
        import openvino

        if precision not in ("fp32", "bf16"):
            raise ValueError(f"OpenVINO's CPU engine runs fp32 or bf16, not {precision}")
        core = openvino.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise ValueError("this CPU has no native bf16")
        core.set_property({"CACHE_DIR": str(path.parent / "openvino")})
        config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self._compiled = core.compile_model(str(path), "CPU", config)
        self._request = self._compiled.create_infer_request()
        self.version = openvino.__version__

    def run(self, *inputs: np.ndarray) -> list[np.ndarray]:
        results = self._request.infer(list(inputs))
        return [np.array(results[output]) for output in self._compiled.outputs]


def open_session(runtime: str, path: Path, threads: int, precision: str):
    """The runtime's session for the ONNX file at `path`."""
    if runtime == "onnxruntime":
        return OnnxRuntimeSession(path, threads, precision)
    if runtime == "openvino":
        return OpenVinoSession(path, threads, precision)
    raise ValueError(f"unknown CPU runtime {runtime!r} (expected one of {', '.join(RUNTIMES)})")
