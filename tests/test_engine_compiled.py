"""The engine cache's entries (engine/compiled.py): a network compiled once by Inductor, saved, loaded back
without tracing, with its weights as inputs. Runs on the CPU (Inductor's C++ backend) on a tiny network;
the CUDA engine uses the same code on EfficientDet (tests/test_engine_cuda.py)."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from effdet_video.engine.compiled import cached_network

pytestmark = pytest.mark.slow


class TwoHeads(nn.Module):
    """Returns lists of tensors, like EfficientDet's (class outputs, box outputs) per level."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.SiLU())
        self.cls = nn.Conv2d(8, 4, 1)
        self.box = nn.Conv2d(8, 2, 1)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        y = self.stem(x)
        return [self.cls(y), self.cls(y[..., ::2, ::2])], [self.box(y), self.box(y[..., ::2, ::2])]


def _unflatten(flat: tuple[torch.Tensor, ...]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    return list(flat[:2]), list(flat[2:])


def _assert_same(ours, reference) -> None:
    for got, want in zip(ours[0] + ours[1], reference[0] + reference[1]):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)


def test_compiled_once_then_loaded_from_disk_with_the_current_weights(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    torch.manual_seed(0)
    network = TwoHeads().eval()
    with torch.no_grad():  # running statistics that are not the identity, so BN is really applied
        network.stem[1].running_mean.uniform_(-1, 1)
        network.stem[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 16, 16)
    path = tmp_path / "engines" / "two-heads.inductor"

    compiled, hit = cached_network(network, x, path, _unflatten)
    assert not hit and path.is_file()
    with torch.inference_mode():
        _assert_same(compiled(x), network(x))

    loaded, hit = cached_network(network, x, path, _unflatten)
    assert hit
    with torch.no_grad():  # weights are inputs of the artifact, not baked in: new values are used
        network.cls.weight.mul_(-3)
    with torch.inference_mode():
        _assert_same(loaded(x), network(x))


def test_a_damaged_artifact_is_compiled_again(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    network = TwoHeads().eval()
    x = torch.randn(1, 3, 8, 8)
    path = tmp_path / "two-heads.inductor"
    path.write_bytes(b"not an artifact")
    compiled, hit = cached_network(network, x, path, _unflatten)
    assert not hit and path.read_bytes() != b"not an artifact"
    with torch.inference_mode():
        _assert_same(compiled(x), network(x))
