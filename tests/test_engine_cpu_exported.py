"""The exported CPU engine (ONNX Runtime, OpenVINO) against the eager CPU engine on the AutoML fixture, its
engine cache, and how the CPU backend is chosen and falls back."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest

from effdet_video.engine import cpu_exported, cpu_runtimes, factory
from effdet_video.engine.base import InferenceBatch
from effdet_video.engine.cpu import CpuEngine
from effdet_video.engine.spec import EngineSpec
from effdet_video.errors import UserError
from tests.support.engine_inputs import FIXTURE, fixture_batch

# Measured with ONNX Runtime 1.32 on the fixture (whose weights amplify float32 rounding, see
# test_engine_cpu.py): scores within 4e-5 and boxes within 0.033 frame pixels of the eager engine.
SCORE_ATOL, BOX_ATOL_PX = 1e-3, 0.1


def _needs(runtime: str) -> None:
    if not cpu_runtimes.installed(cpu_runtimes.RUNTIME_MODULES[runtime] + cpu_runtimes.EXPORT_MODULES):
        pytest.skip(f"{runtime} backend not installed")


@pytest.fixture(scope="module")
def engine_home(tmp_path_factory):
    """One engine cache for this module (its first build exports, later ones load)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EFFDET_VIDEO_HOME", str(home))
        yield home


@pytest.fixture(scope="module")
def eager_reference(automl_fixtures):
    spec = EngineSpec(weights=str(automl_fixtures / f"{FIXTURE}.h5"), batch_size=2, device="cpu")
    batch = fixture_batch(automl_fixtures)
    return spec, batch, CpuEngine(spec).infer(batch)


def _nearest_rows(ours: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """For each reference row, our row of the same class nearest to it (soft-NMS may swap two rows whose
    scores differ in the last bits)."""
    rows = []
    for row in reference:
        same = ours[ours[:, 5] == row[5]]
        assert len(same), f"class {row[5]} missing"
        rows.append(same[np.abs(same[:, :5] - row[:5]).max(axis=1).argmin()])
    return np.stack(rows)


def _assert_equals_eager(result, reference, count: int) -> None:
    np.testing.assert_array_equal(result.num_valid, reference.num_valid)
    for i in range(count):
        ours = _nearest_rows(result.frame(i), reference.frame(i))
        np.testing.assert_allclose(ours[:, 4], reference.frame(i)[:, 4], rtol=0, atol=SCORE_ATOL)
        np.testing.assert_allclose(ours[:, :4], reference.frame(i)[:, :4], rtol=0, atol=BOX_ATOL_PX)


@pytest.mark.slow
def test_onnxruntime_engine_equals_eager_and_is_cached(engine_home, eager_reference):
    _needs("onnxruntime")
    spec, batch, reference = eager_reference
    spec = dataclasses.replace(spec, cpu_backend="onnxruntime")
    first = factory.build_engine(spec)
    assert isinstance(first, cpu_exported.ExportedCpuEngine)
    assert first.build_info["engine_cache"] == "miss"
    result = first.infer(batch)
    assert result.detections.shape == (2, 100, 6)
    _assert_equals_eager(result, reference, batch.count)

    started = time.perf_counter()
    second = factory.build_engine(spec)
    assert second.build_info["engine_cache"] == "hit"
    assert time.perf_counter() - started < 5
    np.testing.assert_array_equal(second.infer(batch).detections, result.detections)

    assert str(_exported_path(spec)) == second.build_info["engine_path"]
    assert str(_exported_path(dataclasses.replace(spec, weights=None, random_weights=True))) != \
        second.build_info["engine_path"]  # the weights are inside the file, so in its key


def _exported_path(spec: EngineSpec):
    import torch

    from effdet_video.engine.graph import build_detection_graph, model_config

    graph = build_detection_graph(spec, model_config(spec), torch.float32, mode="host")
    return cpu_exported.exported_path(graph, spec.batch_size, "fp32")


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_openvino_engine_equals_eager(engine_home, eager_reference, precision):
    """fp32 within the same bounds as ONNX Runtime; bf16 (where the CPU has it): the same number of
    detections, sorted scores within 0.2, as the CUDA engine's bf16 bound."""
    _needs("openvino")
    spec, batch, reference = eager_reference
    spec = dataclasses.replace(spec, cpu_backend="openvino", precision=precision)
    try:
        engine = factory.build_engine(spec)
    except UserError as error:
        pytest.skip(str(error))
    result = engine.infer(batch)
    if precision == "fp32":
        _assert_equals_eager(result, reference, batch.count)
        return
    for i in range(batch.count):
        assert len(result.frame(i)) == len(reference.frame(i))
        assert np.abs(np.sort(result.frame(i)[:, 4]) - np.sort(reference.frame(i)[:, 4])).max() <= 0.2


@pytest.mark.slow
@pytest.mark.parametrize("runtime", ["onnxruntime", "openvino"])
def test_streams_run_batches_in_parallel_in_order(engine_home, eager_reference, runtime):
    """With several streams, batches submitted back to back (their input arrays reused at once, as the
    pipeline's batcher does) come back in submission order, each equal to the eager engine's, also when
    more are in flight than there are streams."""
    _needs(runtime)
    spec, batch, reference = eager_reference
    engine = factory.build_engine(dataclasses.replace(spec, cpu_backend=runtime, cpu_streams=2))
    assert engine.parallel_batches == 2 and engine.build_info["streams"] == 2
    images = batch.images.copy()
    flipped = InferenceBatch(images[::-1].copy(), batch.valid_hw[::-1].copy(), batch.image_scales[::-1].copy(),
                             batch.count)
    expected_flipped = CpuEngine(spec).infer(flipped)
    reused = InferenceBatch(images, batch.valid_hw.copy(), batch.image_scales.copy(), batch.count)
    pending = []
    for i in range(5):
        source = batch if i % 2 == 0 else flipped
        reused.images[...] = source.images
        reused.valid_hw[...] = source.valid_hw
        reused.image_scales[...] = source.image_scales
        pending.append(engine.submit(reused))
    for i, handle in enumerate(pending):
        _assert_equals_eager(handle.result(), reference if i % 2 == 0 else expected_flipped, batch.count)
    engine.close()


def test_auto_backend_falls_back_to_eager_without_runtimes(monkeypatch):
    monkeypatch.delenv(factory.CPU_BACKEND_ENV, raising=False)
    monkeypatch.setattr(cpu_runtimes, "installed", lambda modules: False)
    spec = EngineSpec(random_weights=True, batch_size=1, device="cpu", image_size=(128, 128))
    assert factory.resolve_cpu_backend(spec) == ("eager",)
    assert isinstance(factory.build_engine(spec), CpuEngine)
    with pytest.raises(UserError, match=r"effdet-video\[onnx\]"):
        factory.resolve_cpu_backend(dataclasses.replace(spec, cpu_backend="onnxruntime"))
    with pytest.raises(UserError, match="bf16 on the CPU needs the openvino backend"):
        factory.resolve_cpu_backend(dataclasses.replace(spec, precision="bf16"))


def test_auto_backend_offers_every_installed_runtime_and_obeys_the_environment(monkeypatch):
    monkeypatch.setattr(cpu_runtimes, "installed", lambda modules: True)
    spec = EngineSpec(random_weights=True, device="cpu")
    monkeypatch.delenv(factory.CPU_BACKEND_ENV, raising=False)
    assert factory.resolve_cpu_backend(spec) == ("onnxruntime", "openvino")
    assert factory.resolve_cpu_backend(dataclasses.replace(spec, precision="bf16")) == ("openvino",)
    monkeypatch.setattr(cpu_runtimes, "installed", lambda modules: "openvino" not in modules)
    assert factory.resolve_cpu_backend(spec) == ("onnxruntime",)
    monkeypatch.setenv(factory.CPU_BACKEND_ENV, "eager")
    assert factory.resolve_cpu_backend(spec) == ("eager",)
    monkeypatch.setenv(factory.CPU_BACKEND_ENV, "tensorrt")
    with pytest.raises(UserError, match="unknown CPU backend"):
        factory.resolve_cpu_backend(spec)


def test_failed_export_warns_and_runs_eager(monkeypatch, capsys):
    monkeypatch.setattr(cpu_runtimes, "installed", lambda modules: True)

    def broken(*args, **kwargs):
        raise RuntimeError("exporter broke")

    monkeypatch.setattr(cpu_exported, "ExportedCpuEngine", broken)
    spec = EngineSpec(random_weights=True, batch_size=1, device="cpu", image_size=(128, 128),
                      cpu_backend="onnxruntime")
    engine = factory.build_engine(spec)
    assert isinstance(engine, CpuEngine)
    assert engine.build_info["fallback_error"] == "RuntimeError: exporter broke"
    assert "running eager (RuntimeError: exporter broke)" in capsys.readouterr().err


class _TimedSession:
    """A runtime session that sleeps `seconds` a run and counts its runs."""

    streams = 1

    def __init__(self, runtime: str, seconds: float) -> None:
        self.runtime, self.version, self.seconds, self.runs = runtime, "0", seconds, 0

    def start(self, *inputs):
        self.runs += 1
        time.sleep(self.seconds)
        return lambda: []

    def close(self):
        pass


def test_fastest_runtime_is_measured_once_then_recorded(monkeypatch, tmp_path):
    """With several runtimes installed the first start times each on the graph and keeps the faster; a
    later start opens only the recorded winner, and another thread count is measured afresh."""
    opened = []

    def open_session(runtime, path, threads, precision, streams):
        opened.append(runtime)
        return _TimedSession(runtime, {"onnxruntime": 0.02, "openvino": 0.002}[runtime])

    monkeypatch.setattr(cpu_exported, "open_session", open_session)
    monkeypatch.setattr(cpu_exported.importlib.metadata, "version", lambda name: "1.0")
    path = tmp_path / "graph.onnx"
    inputs = (np.zeros(1),)
    session, choice = cpu_exported.fastest_session(path, ("onnxruntime", "openvino"), 4, "fp32", inputs)
    assert session.runtime == "openvino" and session.runs >= 2 and choice["runtime_choice"] == "measured"
    assert choice["runtime_run_ms"]["onnxruntime"] > choice["runtime_run_ms"]["openvino"]
    assert sorted(opened) == ["onnxruntime", "openvino"]
    opened.clear()
    session, choice = cpu_exported.fastest_session(path, ("onnxruntime", "openvino"), 4, "fp32", inputs)
    assert opened == ["openvino"] and session.runs == 0 and choice == {"runtime_choice": "recorded"}
    opened.clear()
    cpu_exported.fastest_session(path, ("onnxruntime", "openvino"), 2, "fp32", inputs)
    assert sorted(opened) == ["onnxruntime", "openvino"]
    assert not list(tmp_path.glob("*.tmp"))
