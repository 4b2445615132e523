"""Shared test fixtures: where ../shared is, skipping of GPU-only tests on CPU machines, and the fake
engine in place of every engine the CLI builds."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EFFDET_VIDEO_SHARED", REPO.parent / "shared"))
MEDIA = SHARED / "media"
AUTOML_FIXTURES = SHARED / "fixtures" / "automl"
# CPU engines built by tests run eager unless a test asks for a backend: an exported engine costs an
# export (tens of seconds) per model, size and batch. tests/test_engine_cpu_exported.py tests the others.
os.environ.setdefault("EFFDET_VIDEO_CPU_BACKEND", "eager")


def _require(path: Path, what: str) -> Path:
    """Skip when the shared data is absent on a developer machine; fail in CI, where it must be there."""
    if not path.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{what} not found at {path}")
        pytest.skip(f"{what} not found at {path}")
    return path


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if _cuda_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def media() -> Path:
    return _require(MEDIA, "test media")


@pytest.fixture(scope="session")
def automl_fixtures() -> Path:
    return _require(AUTOML_FIXTURES, "AutoML fixtures")


@pytest.fixture
def engines(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every engine the CLI builds, a FakeEngine (tests/support/fakes.py) with the spec's batch size and cap."""
    from effdet_video.engine import factory
    from tests.support.fakes import FakeEngine

    built: list[FakeEngine] = []

    def build(spec):
        built.append(FakeEngine(batch_size=spec.batch_size, max_det=spec.max_det))
        return built[-1]

    monkeypatch.setattr(factory, "build_engine", build)
    return built
