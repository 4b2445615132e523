"""One-off device measurement: where the first forward's seconds go, per convolution backend.

python3 benchmarks/probe_start.py MODE BATCH  ->  one JSON line. MODE:
  heur      cuDNN, heuristic algorithm choice (cudnn.benchmark off)
  autotune  cuDNN with cudnn.benchmark on (what batch >= 8 engines do now)
  nocudnn   cuDNN disabled: ATen's own CUDA convolutions
  linear    1x1 convolutions as matmuls (cuBLAS), cuDNN for the others
Run with CUDA_MODULE_LOADING=EAGER in the environment for the eager-loading variant.
"""
import json
import sys
import time

t_launch = time.perf_counter()
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

mode, batch = sys.argv[1], int(sys.argv[2])
out = {"mode": mode, "batch": batch, "import_torch_s": round(time.perf_counter() - t_launch, 3)}
t = time.perf_counter()
torch.cuda.init()
torch.zeros(1, device="cuda")
out["cuda_init_s"] = round(time.perf_counter() - t, 3)
torch.backends.cudnn.benchmark = mode == "autotune"
torch.backends.cudnn.enabled = mode != "nocudnn"

from effdet_video.configs import get_model_config  # noqa: E402
from effdet_video.models.build import build_model  # noqa: E402

if mode == "linear":
    plain = nn.Conv2d.forward

    def pointwise_as_matmul(self, x):
        if self.kernel_size == (1, 1) and self.groups == 1 and self.stride == (1, 1) and self.padding == (0, 0):
            y = F.linear(x.permute(0, 2, 3, 1), self.weight[:, :, 0, 0], self.bias)
            return y.permute(0, 3, 1, 2)
        return plain(self, x)

    nn.Conv2d.forward = pointwise_as_matmul

t = time.perf_counter()
net = build_model(get_model_config("d0"), None, random=True).to(
    "cuda", dtype=torch.float16, memory_format=torch.channels_last).eval()
out["build_s"] = round(time.perf_counter() - t, 3)
firsts: list[tuple[float, str]] = []
seen: set = set()


def pre(module, args):
    torch.cuda.synchronize()
    module._t = time.perf_counter()


def post(module, args, result):
    torch.cuda.synchronize()
    x = args[0]
    key = (tuple(x.shape), module.weight.shape, module.stride, module.groups)
    if key not in seen:
        seen.add(key)
        kind = "dw" if module.groups > 1 else ("pw" if module.kernel_size == (1, 1) else "full")
        firsts.append((time.perf_counter() - module._t, kind))


hooks = [h for m in net.modules() if isinstance(m, nn.Conv2d)
         for h in (m.register_forward_pre_hook(pre), m.register_forward_hook(post))]
x = torch.randn(batch, 3, 512, 512, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
with torch.inference_mode():
    t = time.perf_counter()
    net(x)
    torch.cuda.synchronize()
    out["first_forward_s"] = round(time.perf_counter() - t, 3)
    out["shapes"] = len(firsts)
    out["first_conv_s"] = round(firsts[0][0], 4)
    for kind in ("full", "dw", "pw"):
        times = [s for s, k in firsts[1:] if k == kind]
        out[f"{kind}_n"], out[f"{kind}_sum_s"] = len(times), round(sum(times), 3)
    for h in hooks:
        h.remove()
    t = time.perf_counter()
    net(x)
    torch.cuda.synchronize()
    out["second_forward_s"] = round(time.perf_counter() - t, 4)
    for b in (batch, 64):
        xb = torch.randn(b, 3, 512, 512, device="cuda", dtype=torch.float16).contiguous(memory_format=torch.channels_last)
        for _ in range(3):
            net(xb)
        torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(10):
            net(xb)
        torch.cuda.synchronize()
        out[f"steady_b{b}_img_s"] = round(10 * b / (time.perf_counter() - t), 1)
out["total_s"] = round(time.perf_counter() - t_launch, 3)
print(json.dumps(out), flush=True)
