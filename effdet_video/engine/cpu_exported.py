"""The fast CPU engine: the detection graph exported to ONNX once, run by ONNX Runtime or OpenVINO.

The exported part is the graph's 'host' mode: normalisation, EfficientDet, best class per anchor, the
static top-K candidates and their box decoding. NMS then runs on those K candidates in torch on one
thread (`graph.host_nms`, the same code as the eager engine's in-graph NMS): exporting the unrolled NMS
loop made the export minutes long for no gain on a CPU, where there is no launch to save.

The ONNX file (torch.onnx.export with the dynamo exporter; the TorchScript exporter cannot express the
shape-dependent 'same' padding), with its spatial means split in two (`split_spatial_means`), is kept
in the engine cache, keyed by architecture, input shape,
precision, exporter versions, model code and weights (which it holds). The first start of a combination
exports it (tens of seconds) and says so on stderr; later starts load it in well under a second.
"""
from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from effdet_video.engine import cache
from effdet_video.engine.base import DetectionBatch, Engine, InferenceBatch, PendingDetections
from effdet_video.engine.cpu_runtimes import open_session
from effdet_video.engine.graph import DetectionGraph, build_detection_graph, host_nms, model_config
from effdet_video.engine.policy import cpu_threads
from effdet_video.engine.spec import EngineSpec

EXPORTED_FORMAT = "onnx"


def example_inputs(batch_size: int, image_size: tuple[int, int]) -> tuple[torch.Tensor, ...]:
    height, width = image_size
    return (torch.zeros((batch_size, height, width, 3), dtype=torch.uint8),
            torch.tensor([[height, width]] * batch_size, dtype=torch.int32),
            torch.ones(batch_size, dtype=torch.float32))


def exported_path(graph: DetectionGraph, batch_size: int, precision: str) -> Path:
    height, width = graph.config.image_size
    exporter = importlib.metadata.version("onnxscript")  # not imported: a second start only loads the file
    return cache.cpu_artifact_path(graph.architecture(), (batch_size, height, width, 3), precision,
                                   EXPORTED_FORMAT, (torch.__version__, exporter),
                                   cache.weights_digest(graph), EXPORTED_FORMAT)


def export_graph(graph: DetectionGraph, batch_size: int, path: Path) -> None:
    """Export `graph` (host mode, float32) to `path`, atomically: a concurrent start never reads half a file."""
    print(f"exporting the CPU engine once for this model, size and batch (tens of seconds); cached in "
          f"{path.parent}", file=sys.stderr)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        # The exporter's own notices (torch internals, deprecations, torchvision ops it skips) are not the
        # user's business.
        exporter_log = logging.getLogger("torch.onnx")
        level = exporter_log.level
        exporter_log.setLevel(logging.ERROR)
        try:
            with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                program = torch.onnx.export(graph, example_inputs(batch_size, graph.config.image_size),
                                            input_names=["images", "valid_hw", "image_scales"],
                                            output_names=["scores", "classes", "boxes", "scales"],
                                            dynamo=True, optimize=True, verbose=False)
        finally:
            exporter_log.setLevel(level)
        program.save(temporary)
        split_spatial_means(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def split_spatial_means(path: str) -> None:
    """Rewrite each ReduceMean over both spatial axes (the squeeze-excite blocks) of the ONNX file at `path`
    as a mean over the width, then over the height.

    ONNX Runtime sums a ReduceMean's H*W elements in one float32 running sum; on the AutoML fixture's
    weights, which amplify rounding (see tests/test_engine_cpu.py), that moved logits by 0.037 from the
    eager engine, against 6e-4 with two shorter sums (eager itself is 3.7e-4 from float64)."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(path)
    graph = model.graph
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    nodes = []
    for node in graph.node:
        axes = constants.get(node.input[1]) if node.op_type == "ReduceMean" and len(node.input) > 1 else None
        keepdims = next((a.i for a in node.attribute if a.name == "keepdims"), 1)
        if axes is None or sorted(int(a) % 4 for a in axes.ravel()) != [2, 3] or not keepdims:
            nodes.append(node)
            continue
        out = node.output[0]
        for axis in (3, 2):
            graph.initializer.append(numpy_helper.from_array(np.array([axis], np.int64), f"{out}_axis{axis}"))
        nodes += [helper.make_node("ReduceMean", [node.input[0], f"{out}_axis3"], [f"{out}_rows"], keepdims=1),
                  helper.make_node("ReduceMean", [f"{out}_rows", f"{out}_axis2"], [out], keepdims=1)]
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    unused = [t for t in graph.initializer if t.name not in used]  # the old axes: runtimes warn of them
    for tensor in unused:
        graph.initializer.remove(tensor)
    onnx.save(model, path)


def cpuinfo(field: str) -> str | None:
    """The value of `field` ('model name', 'flags', ...) for the first CPU in Linux /proc/cpuinfo, or None."""
    try:
        with open("/proc/cpuinfo") as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == field:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_name() -> str:
    """The CPU's model name (/proc/cpuinfo), else what the platform module knows."""
    return cpuinfo("model name") or platform.processor() or platform.machine()


def _run_s(session, inputs: tuple[np.ndarray, ...], budget_s: float = 2.0) -> float:
    """A runtime's time per batch on `inputs` with as many batches in flight as it runs at once (its
    `streams`): one warm-up round, then up to 5 rounds within `budget_s`, the median round."""
    def round_s() -> float:
        begin = time.perf_counter()
        for collect in [session.start(*inputs) for _ in range(session.streams)]:
            collect()
        return (time.perf_counter() - begin) / session.streams

    round_s()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < 5 and (not times or time.perf_counter() - started < budget_s):
        times.append(round_s())
    return sorted(times)[len(times) // 2]


def fastest_session(path: Path, runtimes: tuple[str, ...], threads: int, precision: str,
                    inputs: tuple[np.ndarray, ...], streams: int = 1) -> tuple[object, dict]:
    """The session of the fastest of `runtimes` on this CPU at `threads` threads, and what was measured.

    Which runtime wins depends on the CPU (docs/cpu-engine.md has the figures), so the first start of an
    exported graph times each installed runtime on it and records the winner beside the file, keyed by CPU model,
    thread count and runtime versions; later starts open only the winner."""
    if len(runtimes) == 1:
        return open_session(runtimes[0], path, threads, precision, streams), {}
    key = " | ".join([cpu_name(), f"{threads} threads", f"{streams} streams"]
                     + [f"{name} {importlib.metadata.version(name)}" for name in runtimes])
    record_path = path.with_name(path.name + ".fastest.json")
    try:
        record = json.loads(record_path.read_text())
    except (OSError, ValueError):
        record = {}
    if record.get(key) in runtimes:
        return open_session(record[key], path, threads, precision, streams), {"runtime_choice": "recorded"}
    sessions = {name: open_session(name, path, threads, precision, streams) for name in runtimes}
    run_ms = {name: round(1000 * _run_s(session, inputs), 2) for name, session in sessions.items()}
    fastest = min(run_ms, key=run_ms.get)
    for name, session in sessions.items():
        if name != fastest:
            session.close()
    record[key] = fastest
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=record_path.name, suffix=".tmp")
    with os.fdopen(handle, "w") as out:
        json.dump(record, out, indent=1)
    os.replace(temporary, record_path)
    return sessions[fastest], {"runtime_choice": "measured", "runtime_run_ms": run_ms}


class ExportedCpuEngine(Engine):
    """The engine contract over an exported graph, on the fastest of `runtimes` ('onnxruntime',
    'openvino') that this CPU runs it on."""

    device = "cpu"

    def __init__(self, spec: EngineSpec, runtimes: tuple[str, ...], precision: str = "fp32") -> None:
        started = time.perf_counter()
        self.spec = spec
        self.config = model_config(spec)
        self.batch_size = spec.batch_size
        self.image_size = self.config.image_size
        self.max_det = spec.max_det
        graph = build_detection_graph(spec, self.config, torch.float32, mode="host").eval()
        path = exported_path(graph, spec.batch_size, "fp32")
        hit = path.exists()
        if not hit:
            export_graph(graph, spec.batch_size, path)
        threads = cpu_threads()
        images, valid_hw, scales = example_inputs(spec.batch_size, self.image_size)
        random_images = np.random.default_rng(0).integers(0, 256, images.shape, dtype=np.uint8)
        self._session, choice = fastest_session(path, runtimes, threads, precision,
                                                (random_images, valid_hw.numpy(), scales.numpy()), spec.cpu_streams)
        self.parallel_batches = self._session.streams
        # NMS is a loop of small ops on K candidates: several threads only add synchronisation.
        torch.set_num_threads(1)
        self.build_info = {"backend": self._session.runtime, "precision": precision, "threads": threads,
                           "streams": self._session.streams,
                           "engine_cache": "hit" if hit else "miss", "engine_path": str(path),
                           "runtime_version": self._session.version, **choice,
                           "prepare_s": round(time.perf_counter() - started, 3)}

    def submit(self, batch: InferenceBatch) -> PendingDetections:
        scales = np.array(batch.image_scales, dtype=np.float32)
        collect = self._session.start(np.ascontiguousarray(batch.images),
                                      np.asarray(batch.valid_hw, dtype=np.int32), scales)
        return _PendingNms(collect, scales, batch.count, self.nms)

    def close(self) -> None:
        self._session.close()

    def nms(self, outputs: list[np.ndarray], scales: np.ndarray, count: int) -> DetectionBatch:
        """The host half: NMS on the graph's candidates (`graph.host_nms`)."""
        scores, classes, boxes, _ = outputs
        with torch.inference_mode():
            detections, num_valid = host_nms((torch.from_numpy(scores), torch.from_numpy(classes),
                                              torch.from_numpy(boxes)), torch.from_numpy(scales),
                                             self.config, self.max_det)
        return DetectionBatch(detections.numpy(), num_valid.int().numpy(), count)


class _PendingNms(PendingDetections):
    """A batch the runtime may still be running; its NMS runs when the result is collected, on the
    collecting thread, while the runtime's streams work on the batches behind it."""

    def __init__(self, collect, scales: np.ndarray, count: int, nms) -> None:
        self._collect, self._scales, self._count, self._nms = collect, scales, count, nms

    def result(self) -> DetectionBatch:
        return self._nms(self._collect(), self._scales, self._count)
