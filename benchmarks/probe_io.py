"""One-off device measurements: NVDEC (PyAV hwaccel) vs CPU decode, and the libx264 encode ceiling."""
import itertools
import sys
import time
from fractions import Fraction

import av
from av.codec.hwaccel import HWAccel

clip = sys.argv[1]

def decode(hw):
    t = time.perf_counter(); c0 = time.process_time()
    with av.open(clip, hwaccel=HWAccel(device_type="cuda", allow_software_fallback=False) if hw else None) as c:
        s = c.streams.video[0]
        if not hw:
            s.codec_context.thread_type = "AUTO"
        frames = list(c.decode(s))
    wall = time.perf_counter() - t
    print(f"decode hw={hw}: {len(frames)} frames {len(frames)/wall:.1f} fps, cpu {1000*(time.process_time()-c0)/len(frames):.1f} ms/frame, fmt {frames[0].format.name}", flush=True)
    return frames

cpu = decode(False)
try:
    hw = decode(True)
    print("pts equal", [f.pts for f in hw] == [f.pts for f in cpu])
except Exception as e:
    print("hw decode failed", type(e).__name__, e)
    hw = None
for preset, fmt, frames in (("veryfast", "yuv420p", cpu), ("veryfast", "nv12", hw), ("superfast", "yuv420p", cpu)):
    if frames is None:
        continue
    with av.open("/tmp/enc.mp4", "w") as out:
        st = out.add_stream("libx264", rate=30, options={"preset": preset, "crf": "20"})
        st.width, st.height, st.pix_fmt = frames[0].width, frames[0].height, fmt
        st.codec_context.thread_count = 0; st.codec_context.thread_type = "FRAME"
        t = time.perf_counter(); c0 = time.process_time()
        for i, f in enumerate(itertools.islice(itertools.cycle(frames), 600)):
            f.pts = i; f.time_base = Fraction(1, 30)
            out.mux(st.encode(f))
        out.mux(st.encode(None))
        wall = time.perf_counter() - t
    print(f"encode {preset} {fmt}: {600/wall:.1f} fps, cpu {1000*(time.process_time()-c0)/600:.1f} ms/frame", flush=True)
