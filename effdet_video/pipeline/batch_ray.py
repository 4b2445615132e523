"""Batch on a Ray cluster (the optional extra effdet-video[ray]): `run_batch_ray` runs the per-input unit
(`BatchUnit`) in Ray actors, and `Detector` is a picklable detector callable for Ray Data.

Each actor builds its unit once (its engines and cross-stream batching; `num_gpus` 1/K so that K actors
share a GPU, none on CPU engines) and runs up to `jobs` inputs at once (a threaded actor). The driver
keeps the inputs not yet handed out and gives an actor the next one whenever one of its slots frees up,
so faster nodes take more. OUTDIR must be storage every node sees: each actor writes its outputs there
(atomically, as always) and records what it did in a manifest shard of its own
(OUTDIR/.effdet-batch.<host>-<pid>.json); the driver merges the shards into OUTDIR/.effdet-batch.json
before it plans (a driver that died leaves them for the next one) and when it ends. An actor whose
process dies is restarted by Ray and its calls retried once (each input is idempotent: it starts by
removing what a killed attempt left); an input lost a second time is reported failed.
"""
from __future__ import annotations

import collections
import json
import os
import signal
import socket
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from effdet_video.configs.labels import label_name
from effdet_video.core.control import POLL_S, Interrupted, RunControl
from effdet_video.engine.packing import BatchBuffer
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from effdet_video.ops.letterbox import letterbox_uint8
from effdet_video.pipeline.batch_inputs import BatchItem
from effdet_video.pipeline.batch_manifest import Manifest, ManifestEntry, shard_name
from effdet_video.pipeline.batch_runner import BatchLedger, BatchSummary, ItemProcessor, ItemResult, remove_partials_of
from effdet_video.pipeline.batch_unit import BatchUnit, build_engines, thread_locks_for_progress_bars
from effdet_video.stages.infer import DetectionFilter


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UserError("running on a Ray cluster needs Ray: pip install 'effdet-video[ray]'") from None
    return ray


class BatchActor:
    """One unit on one Ray actor (made remote by `run_batch_ray`): its engines are built once, in the
    constructor, which Ray runs again when it restarts the actor."""

    def __init__(self, unit: BatchUnit) -> None:
        thread_locks_for_progress_bars()
        self.unit = unit
        self.control = RunControl()
        self._context = unit.open()
        opened = self._context.__enter__()
        self._opened = opened
        self.processor = ItemProcessor(unit.options, opened.engine_for_stream, opened.open_source, self.control)
        self.manifest = Manifest(unit.options.output_dir, shard_name(f"{socket.gethostname()}-{os.getpid()}"))

    def pid(self) -> int:
        """The actor's process id (also a way to wait until the actor is built)."""
        return os.getpid()

    def process(self, item: BatchItem) -> tuple[ItemResult, ManifestEntry | None]:
        result, entry = self.processor.process(item)
        if entry is not None:
            self.manifest.record(result.input, entry)
        return result, entry

    def engine_stats(self) -> list[dict[str, Any]]:
        return [{**stats, "worker": f"{socket.gethostname()}-{os.getpid()}"} for stats in self._opened.engine_stats()]


def _actor_count(ray: Any, gpu: bool, actors: int | None, actors_per_gpu: int | None) -> int:
    """--processes actors, else K per GPU of the cluster for GPU engines, else one per node."""
    if actors:
        return actors
    resources = ray.cluster_resources()
    if gpu:
        gpus = int(resources.get("GPU", 0))
        if not gpus:
            raise UserError("Ray: the cluster has no GPU for a CUDA engine (use device 'cpu')")
        return gpus * (actors_per_gpu or 1)
    return max(1, sum(1 for node in ray.nodes() if node.get("Alive")))


def start_actors(ray: Any, unit: BatchUnit, count: int, actors_per_gpu: int | None) -> list[Any]:
    """`count` BatchActors, built (their engines ready) when this returns."""
    gpu = unit.devices[0] != "cpu"
    remote = ray.remote(num_cpus=1, num_gpus=1 / (actors_per_gpu or 1) if gpu else 0, max_restarts=-1,
                        max_task_retries=1, max_concurrency=max(1, unit.options.jobs) + 1)(BatchActor)
    # Ray makes an actor's GPU its cuda:0 (CUDA_VISIBLE_DEVICES).
    actor_unit = unit.on_devices(["cuda:0" if gpu else "cpu"])
    handles = [remote.remote(actor_unit) for _ in range(count)]
    ray.get([handle.pid.remote() for handle in handles])
    return handles


def run_batch_ray(items: list[BatchItem], unit: BatchUnit, address: str | None = None, actors: int | None = None,
                  actors_per_gpu: int | None = None, control: RunControl | None = None,
                  on_result: Callable[[ItemResult], None] | None = None) -> BatchSummary:
    """Process `items` on Ray actors, `unit.options.jobs` inputs at once on each. `address`: 'local'
    starts a Ray instance here, anything else is ray.init's address (None: an instance already started
    in this process, or ray.init's own default). The summary's engines are every actor's."""
    ray = import_ray()
    control = control or RunControl()
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=None if address == "local" else address, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise UserError(f"Ray cluster {address}: cannot connect to it ({error})") from None
    handles: list[Any] = []
    lost: list[int] = []
    manifest = Manifest(unit.options.output_dir)
    try:
        manifest.merge_shards()
        ledger = BatchLedger(items, unit.options, manifest, on_result)
        if not ledger.pending():
            return ledger.summary(0.0, control.stopping)
        built = time.perf_counter()
        count = _actor_count(ray, unit.devices[0] != "cpu", actors, actors_per_gpu)
        handles = start_actors(ray, unit, min(count, len(ledger.pending())), actors_per_gpu)
        started = time.perf_counter()
        lost = _dispatch(ray, handles, items, ledger, control)
        wall_s = time.perf_counter() - started
        engines = [] if control.stopping else _engine_stats(ray, handles)
        summary = ledger.summary(wall_s, control.stopping, engines)
        summary.engine_build_s = round(started - built, 3)
        return summary
    finally:
        for handle in handles:
            ray.kill(handle, no_restart=True)
        for index in lost:  # stopped while running
            remove_partials_of(items[index], unit.options)
        manifest.merge_shards()
        if started_here:
            ray.shutdown()


def _engine_stats(ray: Any, handles: Sequence[Any]) -> list[dict[str, Any]]:
    """Every actor's engine statistics (none from an actor that is gone)."""
    found = []
    for handle in handles:
        try:
            found += ray.get(handle.engine_stats.remote())
        except ray.exceptions.RayError:
            continue
    return found


def _dispatch(ray: Any, handles: Sequence[Any], items: list[BatchItem], ledger: BatchLedger,
              control: RunControl) -> list[int]:
    """Keep every actor's `jobs` slots busy until all inputs have a result or the batch stops; the inputs
    still running when it stopped."""
    waiting = collections.deque(ledger.pending())
    slots = max(1, ledger.options.jobs)
    running: dict[Any, tuple[int, Any]] = {}  # result ref -> (input index, actor)
    load = {id(handle): 0 for handle in handles}
    while (waiting or running) and not control.stopping:
        for handle in handles:
            while waiting and load[id(handle)] < slots:
                index = waiting.popleft()
                running[handle.process.remote(items[index])] = (index, handle)
                load[id(handle)] += 1
        try:
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
        except KeyboardInterrupt:  # no signal handler installed (library use)
            control.fail(Interrupted(signal.SIGINT))
            break
        for ref in done:
            index, handle = running.pop(ref)
            load[id(handle)] -= 1
            try:
                ledger.record(index, *ray.get(ref))
            except ray.exceptions.RayError as error:  # its actor died during the call and its retry
                remove_partials_of(items[index], ledger.options)
                ledger.fail(index, f"its Ray actor died twice ({type(error).__name__})")
    return [index for index, _ in running.values()]


class Detector:
    """A detector for Ray Data, built once per actor: `ds.map_batches(Detector, fn_constructor_kwargs={...},
    concurrency=2, batch_size=16)` over rows with an "image" column (uint8 [H, W, 3] RGB frames, any
    sizes) adds a "detections" column: per frame, the JSON list of the JSONL output's detections (boxes in
    the frame's pixels, score, class_id, class_name)."""

    def __init__(self, model: str = "d0", weights: str | None = None, device: str = "auto",
                 batch_size: int = EngineSpec.batch_size, precision: str = "auto", score_threshold: float = 0.4,
                 max_det: int = 100, class_ids: Sequence[int] | None = None) -> None:
        from effdet_video.configs.labels import labels_for_weights
        from effdet_video.engine.factory import resolve_device
        from effdet_video.models.checkpoints import packaged_weights

        spec = EngineSpec(model=model, weights=weights, batch_size=batch_size, device=resolve_device(device),
                          precision=precision, max_det=max_det)
        self.engine = build_engines(spec, [spec.device])[0]
        self.filter = DetectionFilter(score_threshold, frozenset(class_ids) if class_ids else None, max_det)
        found = weights or packaged_weights(model)
        self.labels = labels_for_weights(None if found is None else Path(found))

    def detect(self, images: Sequence[np.ndarray]) -> list[list[dict[str, Any]]]:
        """The kept detections of each image, in the engine's batches."""
        size = self.engine.batch_size
        height, width = self.engine.image_size
        found: list[list[dict[str, Any]]] = []
        for start in range(0, len(images), size):
            chunk = images[start:start + size]
            buffer = BatchBuffer(size, height, width)  # zeroed: letterboxing leaves the padding as it is
            geometries = []
            for row, image in enumerate(chunk):
                _, geometry = letterbox_uint8(np.ascontiguousarray(image, dtype=np.uint8), (height, width),
                                              out=buffer.images[row])
                buffer.valid_hw[row] = geometry.resized_hw
                buffer.scales[row] = geometry.image_scale
                geometries.append(geometry)
            result = self.engine.submit(buffer.batch(len(chunk))).result()
            for row, geometry in enumerate(geometries):
                kept = self.filter.apply(geometry.clip_to_frame(result.detections[row, :result.num_valid[row]]))
                found.append([{"box": [round(float(v), 2) for v in box[:4]], "score": round(float(box[4]), 4),
                               "class_id": int(box[5]), "class_name": label_name(int(box[5]), self.labels)}
                              for box in kept])
        return found

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        detections = self.detect(list(batch["image"]))
        return {**batch, "detections": np.array([json.dumps(frame) for frame in detections], dtype=object)}
