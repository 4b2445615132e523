"""gpu_sharing.py: when the batch starts its own MPS control daemon, what its workers are told, and that
the daemon is gone when the batch ends. A stand-in control program (a shell script on PATH) plays
NVIDIA's: `-f` makes the control socket and waits for a "quit" that the program without arguments
passes on; the GPU test at the end runs NVIDIA's own."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from effdet_video.pipeline import gpu_sharing

FAKE_CONTROL = """#!/bin/sh
pipe="$CUDA_MPS_PIPE_DIRECTORY"
if [ "$1" = "-f" ]; then
  echo $$ > "$RECORD/pid"
  : > "$pipe/control"
  while [ ! -e "$pipe/quit" ]; do sleep 0.02; done
  echo exited >> "$RECORD/log"
  exit 0
fi
read command
echo "$command" >> "$RECORD/log"
[ "$command" = quit ] && : > "$pipe/quit"
"""


@pytest.fixture
def fake_control(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    bin_dir, record = tmp_path / "bin", tmp_path / "record"
    bin_dir.mkdir()
    record.mkdir()
    program = bin_dir / gpu_sharing.CONTROL
    program.write_text(FAKE_CONTROL)
    program.chmod(program.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RECORD", str(record))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(gpu_sharing, "SYSTEM_PIPE", tmp_path / "no-system-daemon")
    return record


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_two_workers_on_a_gpu_get_a_private_daemon_that_quits_with_the_batch(fake_control: Path) -> None:
    with gpu_sharing.gpu_sharing(["cuda:0", "cuda:1", "cuda:0"]) as sharing:
        pipe = Path(sharing.environment["CUDA_MPS_PIPE_DIRECTORY"])
        assert (pipe / "control").exists()
        assert Path(sharing.environment["CUDA_MPS_LOG_DIRECTORY"]).is_dir()
        assert sharing.state == "MPS, a private control daemon"
        pid = int((fake_control / "pid").read_text())
        assert alive(pid)
    assert not alive(pid)
    assert (fake_control / "log").read_text().split() == ["quit", "exited"]
    assert not pipe.parent.exists()  # the private folder is removed


@pytest.mark.parametrize(("devices", "mode", "machine_daemon", "state"), [
    (["cuda:0", "cuda:1"], "auto", False, "no MPS: no GPU has two worker processes"),
    (["cpu", "cpu"], "auto", False, "no MPS: no GPU has two worker processes"),
    (["cuda:0", "cuda:0"], "off", False, "no MPS: --mps off"),
    (["cuda:0", "cuda:0"], "auto", True, "MPS, the machine's own daemon"),
])
def test_no_daemon_is_started_where_it_is_not_wanted(fake_control: Path, monkeypatch: pytest.MonkeyPatch,
                                                     devices: list[str], mode: str, machine_daemon: bool,
                                                     state: str) -> None:
    if machine_daemon:
        monkeypatch.setenv("CUDA_MPS_PIPE_DIRECTORY", "/somewhere/else")
    with gpu_sharing.gpu_sharing(devices, mode) as sharing:
        assert sharing.environment == {}
        assert sharing.state == state
    assert not (fake_control / "pid").exists()


def test_without_the_control_program_the_batch_runs_without_mps(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)
    monkeypatch.setattr(gpu_sharing, "SYSTEM_PIPE", tmp_path / "none")
    with gpu_sharing.gpu_sharing(["cuda:0", "cuda:0"]) as sharing:
        assert sharing.environment == {}
        assert sharing.state == f"no MPS: {gpu_sharing.CONTROL} is not on PATH"


def test_a_daemon_that_exits_at_once_is_reported_and_the_batch_goes_on(fake_control: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    program = Path(os.environ["PATH"].split(os.pathsep)[0]) / gpu_sharing.CONTROL
    program.write_text("#!/bin/sh\nexit 3\n")
    with gpu_sharing.gpu_sharing(["cuda:0", "cuda:0"]) as sharing:
        assert sharing.environment == {}
        assert sharing.state == "no MPS: its control daemon did not start (exit code 3)"


CLIENT = "import sys, torch; torch.ones(1, device='cuda').sum().item(); print('ready', flush=True); sys.stdin.read()"


@pytest.mark.gpu
def test_a_worker_given_the_environment_runs_through_the_private_daemons_server(monkeypatch: pytest.MonkeyPatch) -> None:
    """NVIDIA's own control program: a CUDA process with the workers' environment starts an MPS server
    (the daemon starts one for its first client); after the batch no daemon or server is left."""
    import subprocess
    import sys

    if gpu_sharing.shutil.which(gpu_sharing.CONTROL) is None:
        pytest.skip(f"{gpu_sharing.CONTROL} is not on PATH")
    monkeypatch.delenv("CUDA_MPS_PIPE_DIRECTORY", raising=False)

    def mps_processes() -> list[str]:
        found = subprocess.run(["pgrep", "-f", "nvidia-cuda-mps"], capture_output=True, text=True).stdout
        return found.split()

    before = mps_processes()
    with gpu_sharing.gpu_sharing(["cuda:0", "cuda:0"]) as sharing:
        assert sharing.state == "MPS, a private control daemon"
        client = subprocess.Popen([sys.executable, "-c", CLIENT], env={**os.environ, **sharing.environment},
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert client.stdout.readline().strip() == "ready"
        servers = subprocess.run(["pgrep", "-f", "nvidia-cuda-mps-server"], capture_output=True, text=True)
        client.communicate("")
        assert client.returncode == 0
    assert servers.stdout.split(), "the client ran without MPS"
    assert mps_processes() == before
