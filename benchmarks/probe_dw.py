"""One-off device measurement: the Triton depthwise kernel's block sizes against cuDNN on D0's shapes.

python3 benchmarks/probe_dw.py BATCH -> per shape: cuDNN us, best Triton config and its us; totals weighted by
how often D0 runs each shape.
"""
import collections
import itertools
import math
import sys

import torch
import torch.nn.functional as F

from effdet_video.configs import get_model_config
from effdet_video.models.build import build_model
from effdet_video.models.layers import Conv2dSame
from effdet_video.ops.depthwise import tf_same_padding
from effdet_video.ops.depthwise_triton import depthwise_conv2d_nhwc

batch = int(sys.argv[1])
net = build_model(get_model_config("d0"), None, random=True).cuda().half().to(memory_format=torch.channels_last).eval()
shapes = collections.Counter()
hooks = [m.register_forward_pre_hook(lambda m, a: shapes.update([(tuple(a[0].shape[1:]), m.kernel_size[0], m.stride[0])]))
         for m in net.modules() if isinstance(m, Conv2dSame) and m._depthwise]
with torch.inference_mode():
    net(torch.randn(1, 3, 512, 512, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last))
for h in hooks:
    h.remove()


def timed(fn, reps=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    torch.cuda.synchronize()
    return 1000 * start.elapsed_time(end) / reps


configs = [(bc, bp, w) for bc, bp, w in itertools.product((32, 64, 128), (16, 32, 64), (4, 8)) if 1024 <= bc * bp <= 4096]
totals = collections.Counter()
cudnn_total = best_total = 0.0
with torch.inference_mode():
    for (c, h, w), k, s in sorted(shapes):
        n = shapes[((c, h, w), k, s)]
        x = torch.randn(batch, c, h, w, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
        wt = torch.randn(c, 1, k, k, device="cuda", dtype=torch.half).contiguous(memory_format=torch.channels_last)
        t, b = tf_same_padding(h, k, s)
        l, r = tf_same_padding(w, k, s)
        cudnn = timed(lambda: F.conv2d(F.pad(x, (l, r, t, b)) if s > 1 else x, wt, stride=s, padding=0 if s > 1 else k // 2, groups=c))
        default = timed(lambda: depthwise_conv2d_nhwc(x, wt, s, t, l, math.ceil(h / s), math.ceil(w / s)))
        results = {}
        for bc, bp, nw in configs:
            results[(bc, bp, nw)] = timed(lambda: depthwise_conv2d_nhwc(x, wt, s, t, l, math.ceil(h / s), math.ceil(w / s), bc, bp, nw))
            totals[(bc, bp, nw)] += n * results[(bc, bp, nw)]
        best = min(results, key=results.get)
        cudnn_total += n * cudnn
        best_total += n * results[best]
        print(f"C{c:5d} {h:3d}x{w:<3d} k{k} s{s} x{n:2d}: cudnn {cudnn:7.1f} us  default {default:7.1f}  best {best} {results[best]:7.1f}", flush=True)
print(f"weighted totals: cudnn {cudnn_total:.0f} us, best per shape {best_total:.0f} us")
for config, total in sorted(totals.items(), key=lambda kv: kv[1])[:5]:
    print("one config for all", config, f"{total:.0f} us")
