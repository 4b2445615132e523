"""The engine policy (engine/policy.py): each command's default batch per device and the batch thresholds,
and the commands taking their defaults from it (a changed policy changes what they build)."""
from __future__ import annotations

import pytest

from effdet_video.commands import bench as bench_command
from effdet_video.commands.common import engine_options, engine_spec
from effdet_video.engine import policy
from effdet_video.engine.policy import autotunes_cudnn, default_batch_size, prefers_quick_start
from tests.support.fakes import run_cli
from tests.support.pipeline_clips import make_clip

DEFAULTS = {  # (mode, device) -> the engine batch a command builds without --batch-size
    ("run", "cpu"): 2, ("run", "cuda"): 8, ("run", "cuda:1"): 8,
    ("live", "cpu"): 1, ("live", "cuda"): 1,
    ("batch", "cpu"): 2, ("batch", "cuda"): 64, ("batch", "cuda:1"): 64,
    ("demo", "cpu"): 4, ("demo", "cuda"): 4,
    ("bench", "cpu"): 2, ("bench", "cuda"): 8,
}


@pytest.mark.parametrize("mode, device", list(DEFAULTS))
def test_default_batch_size_per_mode_and_device(mode, device):
    assert default_batch_size(mode, device) == DEFAULTS[mode, device]


def test_every_mode_has_a_default_and_an_unresolved_device_is_refused():
    assert {mode for mode, _ in DEFAULTS} == set(policy.MODES)
    with pytest.raises(ValueError, match="resolved device"):
        default_batch_size("run", "auto")
    with pytest.raises(ValueError, match="unknown mode"):
        default_batch_size("train", "cpu")  # type: ignore[arg-type]


def test_quick_start_and_autotuner_follow_the_command_defaults():
    """`run` and `live` engines start quickly; `batch`'s keep cuDNN and its autotuner."""
    assert prefers_quick_start(default_batch_size("run", "cuda")) and prefers_quick_start(1)
    assert not prefers_quick_start(default_batch_size("run", "cuda") + 1)
    assert not prefers_quick_start(default_batch_size("batch", "cuda"))
    assert autotunes_cudnn(default_batch_size("batch", "cuda")) and autotunes_cudnn(8)
    assert not autotunes_cudnn(7) and not autotunes_cudnn(default_batch_size("live", "cuda"))


@pytest.fixture
def changed_policy(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Every mode's CPU default set to a batch no command has on its own, 10 + its position."""
    changed = {mode: 10 + index for index, mode in enumerate(policy.MODES)}
    for mode, size in changed.items():
        monkeypatch.setitem(policy._CPU_DEFAULTS, mode, size)
    return changed


def test_run_builds_the_policys_batch(tmp_path, capsys, engines, changed_policy):
    clip = make_clip(tmp_path / "in.mp4", 3)
    code, err = run_cli(capsys, clip, "--no-video", "--jsonl", tmp_path / "d.jsonl", "--device", "cpu", "--quiet")
    assert code == 0, err
    assert [engine.batch_size for engine in engines] == [changed_policy["run"]]


def test_batch_builds_the_policys_batch(tmp_path, capsys, engines, changed_policy):
    (tmp_path / "in").mkdir()
    make_clip(tmp_path / "in" / "a.mp4", 3)
    code, err = run_cli(capsys, "batch", tmp_path / "in", "-o", tmp_path / "out", "--format", "jsonl",
                        "--device", "cpu", "-q")
    assert code == 0, err
    assert [engine.batch_size for engine in engines] == [changed_policy["batch"]]


SPEC_OPTIONS = {"model": "d0", "weights": None, "random_weights": True, "batch_size": None, "device": "cpu",
                "precision": "auto", "max_det": 100}


def test_the_spec_builders_take_the_policys_batch(changed_policy):
    options = SPEC_OPTIONS
    for mode in ("run", "live", "batch"):
        assert engine_spec(options, mode).batch_size == changed_policy[mode]
    assert engine_spec({**options, "batch_size": 5}, "live").batch_size == 5  # --batch-size wins
    assert bench_command.command_spec("d0", None, "auto", None, "cpu").batch_size == changed_policy["bench"]


def test_batch_size_help_states_the_policys_defaults():
    import click

    @click.command()
    @engine_options
    def probe(**_: object) -> None:
        """Only for its help."""

    help_text = " ".join(probe.get_help(click.Context(probe)).split())
    assert (f"{default_batch_size('run', 'cuda')} on CUDA, {default_batch_size('run', 'cpu')} on CPU; "
            f"batch: {default_batch_size('batch', 'cuda')} on CUDA; live: {default_batch_size('live', 'cuda')}"
            in help_text)


def test_bench_sweeps_the_batches_of_live_and_batch():
    params = {param.name: param.default for param in bench_command.command.params}
    assert params["batch_sizes"] == f"{default_batch_size('live', 'cuda')},{default_batch_size('batch', 'cuda')}"


def test_cpu_streams_follow_the_mode_and_the_cores():
    """A CPU engine runs several batches at once for throughput, one on every thread for `live`, and
    other devices one batch at a time; `run` keeps as many in flight (stages/infer.EngineBatcher)."""
    assert policy.cpu_streams("live", "cpu", threads=16) == 1
    assert policy.cpu_streams("run", "cpu", threads=16) == policy.MAX_CPU_STREAMS
    assert [policy.cpu_streams("batch", "cpu", threads=n) for n in (1, 2, 3)] == [1, 2, 3]
    assert policy.cpu_streams("run", "cuda", threads=16) == 1
    assert engine_spec(SPEC_OPTIONS, "run").cpu_streams == policy.cpu_streams("run", "cpu")
    assert engine_spec(SPEC_OPTIONS, "live").cpu_streams == 1
