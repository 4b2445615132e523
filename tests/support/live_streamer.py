"""Test helper (a process of its own): plays an MPEG-TS clip in real time as a live UDP stream to a loopback port, replaying it for
a bounded time, then exits by itself.

    python tests/support/live_streamer.py CLIP.ts PORT SECONDS
"""
from __future__ import annotations

import sys
import time

import av


def stream(clip: str, port: int, seconds: float) -> int:
    """Send the clip's packets unchanged (no re-encoding: cheap), each at its dts; returns packets sent."""
    with av.open(clip) as source:
        video = source.streams.video[0]
        packets = [(bytes(p), p.pts, p.dts, p.is_keyframe) for p in source.demux(video) if p.dts is not None]
        time_base, template = video.time_base, video
        period = packets[1][2] - packets[0][2]
        span = packets[-1][2] - packets[0][2] + period
        sent = 0
        with av.open(f"udp://127.0.0.1:{port}?pkt_size=1316", mode="w", format="mpegts") as output:
            target = output.add_stream_from_template(template)
            start = time.monotonic()
            offset = 0
            while time.monotonic() - start < seconds:
                for data, pts, dts, keyframe in packets:
                    due = start + float((dts - packets[0][2] + offset) * time_base)
                    time.sleep(max(0.0, due - time.monotonic()))
                    packet = av.Packet(data)
                    packet.pts, packet.dts, packet.time_base = pts + offset, dts + offset, time_base
                    packet.is_keyframe = keyframe
                    packet.stream = target
                    output.mux(packet)
                    sent += 1
                offset += span
    return sent


if __name__ == "__main__":
    print(stream(sys.argv[1], int(sys.argv[2]), float(sys.argv[3])), flush=True)
