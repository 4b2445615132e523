"""The network compiled by Inductor ahead of time and kept on disk: the engine cache's entries.

torch.compile re-traces the model with Dynamo at every start (about a minute for EfficientDet), so it
cannot give a fast second start. Instead the network is traced once with `make_fx`, with its weights as
graph *inputs*, compiled with `torch._inductor.standalone_compile` and saved as one binary artifact
(generated code and its compiled Triton kernels). A later start loads that artifact and calls it
directly: no tracing, no code generation, no kernel compilation. Since the weights are inputs, one
artifact serves every checkpoint of the same architecture, batch, size and precision.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch
from torch import nn

TensorTuple = tuple[torch.Tensor, ...]


def _state(network: nn.Module) -> tuple[list[str], list[torch.Tensor]]:
    """Names and tensors of every parameter and buffer, the order the artifact takes them in."""
    named = [*network.named_parameters(), *network.named_buffers()]
    return [name for name, _ in named], [tensor.detach() for _, tensor in named]


def flatten_outputs(outputs: object) -> TensorTuple:
    """A nest of tuples/lists of tensors as one flat tuple (what a compiled graph returns)."""
    if isinstance(outputs, torch.Tensor):
        return (outputs,)
    return tuple(t for item in outputs for t in flatten_outputs(item))


class CompiledNetwork(nn.Module):
    """Calls a compiled artifact with `network`'s weights; returns what `network` returns, re-nested
    by `unflatten` (the artifact returns a flat list)."""

    def __init__(self, artifact: Callable[..., Sequence[torch.Tensor]], network: nn.Module,
                 unflatten: Callable[[TensorTuple], object]) -> None:
        super().__init__()
        self.network = network  # keeps the weights alive and on the module (.to(), state_dict)
        self._artifact = artifact
        self._unflatten = unflatten
        _, self._tensors = _state(network)

    def forward(self, x: torch.Tensor) -> object:
        return self._unflatten(tuple(self._artifact(*self._tensors, x)))


@contextlib.contextmanager
def _single_process_loading() -> Iterator[None]:
    """Everything is precompiled: don't start Inductor's pool of compile workers (a second of start-up)."""
    from torch._inductor import config

    with config.patch(compile_threads=1):
        yield


def compile_network(network: nn.Module, example: torch.Tensor) -> Callable[..., Sequence[torch.Tensor]]:
    """Trace `network(example)` with the weights as inputs and compile it with Inductor."""
    from torch.fx.experimental.proxy_tensor import make_fx

    names, tensors = _state(network)

    def flat_forward(*args: torch.Tensor) -> TensorTuple:
        *state, x = args
        return flatten_outputs(torch.func.functional_call(network, dict(zip(names, state)), (x,)))

    with torch.no_grad():
        graph = make_fx(flat_forward)(*tensors, example)
        return torch._inductor.standalone_compile(graph, [*tensors, example],
                                                  dynamic_shapes="from_example_inputs", options={})


def save_artifact(artifact: object, path: Path) -> None:
    """Write atomically: a concurrent start never loads half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(handle)
    try:
        artifact.save(path=temporary, format="binary")
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def load_artifact(path: Path) -> Callable[..., Sequence[torch.Tensor]]:
    with _single_process_loading():
        return torch._inductor.CompiledArtifact.load(path=str(path), format="binary")


def cached_network(network: nn.Module, example: torch.Tensor, path: Path,
                   unflatten: Callable[[TensorTuple], object]) -> tuple[CompiledNetwork, bool]:
    """`network` compiled, from the artifact at `path` when there is one (else compiled and saved
    there); and whether it was a cache hit. An artifact that fails to load (torch upgraded, file
    damaged) is compiled again and replaced."""
    if path.exists():
        try:
            return CompiledNetwork(load_artifact(path), network, unflatten), True
        except Exception:  # noqa: BLE001 - any unreadable entry is rebuilt, never fatal
            path.unlink(missing_ok=True)
    artifact = compile_network(network, example)
    save_artifact(artifact, path)
    return CompiledNetwork(artifact, network, unflatten), False
