import time, torch
from effdet_video.configs import get_model_config
from effdet_video.ops.anchors import generate_anchors
from effdet_video.ops.postprocess import detect
cfg = get_model_config("d0"); B = 8
anchors = generate_anchors(cfg).cuda()
hw = [(64, 64), (32, 32), (16, 16), (8, 8), (4, 4)]
g = torch.Generator(device="cuda").manual_seed(0)
cls = [torch.randn(B, 810, h, w, device="cuda", generator=g, dtype=torch.float16) * 2 - 3 for h, w in hw]
box = [torch.randn(B, 36, h, w, device="cuda", generator=g, dtype=torch.float16) * 0.5 for h, w in hw]
scales = torch.full((B,), 2.5, device="cuda")
for nms in (cfg.nms, type(cfg.nms)(method="hard")):
    for K in (1024, 4096):
        f = lambda: detect(cls, box, anchors, scales, (512, 512), nms, 100, K)
        s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):
            ref = f()
        torch.cuda.current_stream().wait_stream(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = f()
        graph.replay(); torch.cuda.synchronize()
        assert torch.equal(out[0], ref[0])
        t = time.perf_counter()
        for _ in range(50): graph.replay()
        torch.cuda.synchronize(); dt = (time.perf_counter() - t) / 50
        t = time.perf_counter()
        for _ in range(10): f()
        torch.cuda.synchronize(); de = (time.perf_counter() - t) / 10
        print(f"{nms.method:8s} K={K:5d} B={B}: graph replay {dt*1e3:.2f} ms/batch, eager {de*1e3:.2f} ms/batch")
import sys
if "--compile" in sys.argv:
    nms = cfg.nms
    t = time.perf_counter()
    fc = torch.compile(lambda: detect(cls, box, anchors, scales, (512, 512), nms, 100, 4096), fullgraph=True)
    out = fc(); torch.cuda.synchronize()
    print(f"inductor compile {time.perf_counter() - t:.1f} s")
    s = torch.cuda.Stream(); s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        fc()
    torch.cuda.current_stream().wait_stream(s)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fc()
    graph.replay(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(50): graph.replay()
    torch.cuda.synchronize(); print(f"inductor+graph gaussian K=4096: {(time.perf_counter() - t) / 50 * 1e3:.2f} ms/batch")
