"""One-off device check: which AOTInductor package / loader combination loads on this torch without crashing.

python3 benchmarks/probe_aoti.py            compiles two packages of a small conv net (weights as inputs, and
                                         weights baked in), then loads each in fresh processes with each
                                         loader call and prints their exit codes (-11: segfault)
python3 benchmarks/probe_aoti.py load PACKAGE VARIANT   (the child)
"""
import os
import subprocess
import sys
import time

import torch
from torch import nn

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.c = nn.Conv2d(16, 8, 1)

    def forward(self, x):
        return (self.c(torch.nn.functional.silu(self.b(self.a(x)))).sigmoid(),)


class WeightsAsInputs(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.names = [n for n, _ in net.named_parameters()]
        self.call = lambda state, x: torch.func.functional_call(net, state, (x,))

    def forward(self, *args):
        *state, x = args
        return self.call(dict(zip(self.names, state)), x)


def example():
    torch.manual_seed(0)
    dtype = torch.half if DEVICE == "cuda" else torch.float
    net = Net().to(DEVICE, dtype).to(memory_format=torch.channels_last).eval()
    x = torch.randn(2, 3, 64, 64, device=DEVICE, dtype=dtype).contiguous(memory_format=torch.channels_last)
    return net, x


def compile_all(folder):
    from torch._inductor import aoti_compile_and_package

    net, x = example()
    weights = [p.detach() for p in net.parameters()]
    with torch.no_grad():
        for name, module, args in (("inputs", WeightsAsInputs(net), (*weights, x)), ("baked", net, (x,))):
            t = time.perf_counter()
            program = torch.export.export(module, args, strict=False)
            path = aoti_compile_and_package(program, package_path=os.path.join(folder, f"{name}.pt2"))
            print(f"compiled {name} in {time.perf_counter() - t:.1f}s", flush=True)
            yield name, path


def load(path, variant):
    t = time.perf_counter()
    if variant == "api":
        from torch._inductor import aoti_load_package
        runner = aoti_load_package(path).loader
    elif variant == "st":
        runner = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, 0)
    elif variant == "mt":
        runner = torch._C._aoti.AOTIModelPackageLoader(path, "model", False, 1, 0)
    elif variant == "st_noidx":
        runner = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, -1)
    elif variant == "cudafirst":
        torch.zeros(1, device=DEVICE)
        runner = torch._C._aoti.AOTIModelPackageLoader(path, "model", True, 1, 0)
    loaded = time.perf_counter() - t
    net, x = example()
    inputs = [*[p.detach() for p in net.parameters()], x] if "inputs" in path else [x]
    got = runner.run(inputs)
    with torch.no_grad():
        want = net(x)[0]
    err = (got[0].float() - want.float()).abs().max().item()
    print(f"ok load {loaded:.2f}s maxerr {err:.2e}", flush=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "load":
        load(sys.argv[2], sys.argv[3])
        sys.exit(0)
    print(torch.__version__, flush=True)
    folder = "/tmp/aoti-probe"
    os.makedirs(folder, exist_ok=True)
    for name, path in compile_all(folder):
        for variant in ("cudafirst", "st", "mt", "st_noidx", "api"):
            done = subprocess.run([sys.executable, "-X", "faulthandler", __file__, "load", path, variant],
                                  capture_output=True, text=True, timeout=120)
            tail = (done.stdout + done.stderr).strip().splitlines()[-3:]
            print(f"{name:7s} {variant:10s} rc={done.returncode} {' | '.join(tail)[:400]}", flush=True)
