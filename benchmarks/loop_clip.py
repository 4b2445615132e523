"""A longer clip for the CPU-only line of issue 15 (benchmarks/device-bench.sh cpuvideolong): the video
stream of CLIP copied TIMES times end to end, packets untouched, timestamps shifted by the copies before.
Short clips (60-90 frames, about a second of a CPU engine) leave a run's start and drain as large as the
difference measured. python3 benchmarks/loop_clip.py CLIP OUT TIMES"""
import sys

import av

source, target, times = sys.argv[1], sys.argv[2], int(sys.argv[3])
with av.open(source) as probe:
    packets = [p for p in probe.demux(probe.streams.video[0]) if p.size]
    timed = [p for p in packets if p.pts is not None]
    span = max(p.pts + (p.duration or 0) for p in timed) - min(p.pts for p in timed)
    # Matroska stores no decoding times: the demuxer leaves the first packets' unknown; muxing needs them
    # (a tick apart, just before the first known one).
    decode_times = [p.dts for p in packets]
    for index in reversed(range(len(decode_times) - 1)):
        if decode_times[index] is None:
            decode_times[index] = decode_times[index + 1] - 1
with av.open(source) as inp, av.open(target, "w") as out:
    stream = out.add_stream_from_template(inp.streams.video[0])
    for copy in range(times):
        for packet, dts in zip(packets, decode_times):
            shifted = av.Packet(bytes(packet))
            shifted.pts = None if packet.pts is None else packet.pts + copy * span
            shifted.dts = dts + copy * span
            shifted.duration, shifted.is_keyframe = packet.duration, packet.is_keyframe
            shifted.time_base, shifted.stream = packet.time_base, stream
            out.mux(shifted)
