#!/usr/bin/env python3
"""CPU per stream of each input kind at 5 Mbps, beside UDP's, in one run.

Called by bench/inputs.sh with the 5 Mbps input of bench/input.sh. For each
input kind, N streams (DVR_BENCH_STREAMS, default 5) of the same input are
sent in real time by `ffmpeg -re -c copy`, one sender per stream, to:

- one `dvr run` whose N live-only streams take that input (`udp://`,
  `publish://` behind `rtmp.listen`, or an SRT listener: all N streams on
  one UDP port, told apart by stream id, ffmpeg calling as
  `srt://…?streamid=sI`), and
- N ffmpeg receivers, the peer: `ffmpeg -i udp://… -c copy -f hls` for UDP,
  `ffmpeg -listen 1 -i rtmp://… -c copy -f hls` for RTMP,
  `ffmpeg -i srt://…?mode=listener -c copy -f hls` for SRT (one port each).

CPU is user + system time from /proc/PID/stat over a window (default 30 s)
after a 10 s warm-up, of the receiving side only (the senders are not
counted). The figure is percent of a core per stream; the last column is
the kind's cost relative to UDP's (issue 21 asks RTMP and SRT to stay
within 2x).
It is a measurement, not a test: it exits 0 whatever it finds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / CLK_TCK


def sender(input_path: str, kind: str, target: str) -> subprocess.Popen:
    fmt = ["-f", "flv", target] if kind == "rtmp" else ["-f", "mpegts", target]
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-re", "-stream_loop", "-1",
         "-i", input_path, "-c", "copy", *fmt],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def measure(pids: list[int], warmup: float, window: float) -> float:
    time.sleep(warmup)
    c0, t0 = cpu_seconds(pids), time.monotonic()
    time.sleep(window)
    c1, t1 = cpu_seconds(pids), time.monotonic()
    return (c1 - c0) / (t1 - t0)


def playing(port: int, stream: str) -> bool:
    """Whether the stream's live playlist lists segments: the figure is of
    streams really recorded."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", f"/{stream}/index.m3u8")
        response = conn.getresponse()
        return response.status == 200 and b"#EXTINF" in response.read()
    finally:
        conn.close()


def run_dvr(args, kind: str, scratch: str) -> float:
    http, rtmp, srt = free_port(), free_port(), free_port()
    udp = [free_port() for _ in range(args.streams)]
    lines = [f"version: 1\nhttp: {{ listen: \"127.0.0.1:{http}\" }}\n",
             f"rtmp: {{ listen: \"127.0.0.1:{rtmp}\" }}\nstreams:\n"]
    for i in range(args.streams):
        source = {"udp": f"udp://127.0.0.1:{udp[i]}", "rtmp": "publish://",
                  "srt": f"srt://127.0.0.1:{srt}?mode=listener&streamid=s{i}"}[kind]
        lines.append(f"  s{i}:\n    inputs: [ \"{source}\" ]\n")
    config = os.path.join(scratch, f"{kind}.yaml")
    with open(config, "w") as f:
        f.write("".join(lines))
    dvr = subprocess.Popen([args.dvr, "run", "--config", config, "--data-dir",
                            os.path.join(scratch, f"data-{kind}")],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    senders = []
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", rtmp), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit("dvr run did not start")
                time.sleep(0.2)
        for i in range(args.streams):
            target = {"udp": f"udp://127.0.0.1:{udp[i]}?pkt_size=1316",
                      "rtmp": f"rtmp://127.0.0.1:{rtmp}/live/s{i}",
                      "srt": f"srt://127.0.0.1:{srt}?streamid=s{i}&pkt_size=1316"}[kind]
            senders.append(sender(args.input, kind, target))
        cpu = measure([dvr.pid], args.warmup, args.window) / args.streams
        live = sum(playing(http, f"s{i}") for i in range(args.streams))
        if live < args.streams:
            sys.exit(f"{kind}: only {live} of {args.streams} streams have a live playlist")
        return cpu
    finally:
        for p in senders + [dvr]:
            p.terminate()
        for p in senders + [dvr]:
            p.wait()


def run_ffmpeg(args, kind: str, scratch: str) -> float:
    receivers, senders = [], []
    try:
        for i in range(args.streams):
            port = free_port()
            out = os.path.join(scratch, f"ff-{kind}-{i}")
            os.makedirs(out, exist_ok=True)
            source = {"udp": ["-i", f"udp://127.0.0.1:{port}"],
                      "rtmp": ["-listen", "1", "-i", f"rtmp://127.0.0.1:{port}/live/s"],
                      "srt": ["-i", f"srt://127.0.0.1:{port}?mode=listener"]}[kind]
            receivers.append(subprocess.Popen(
                ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", *source, "-c", "copy",
                 "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
                 "-hls_flags", "delete_segments", os.path.join(out, "index.m3u8")],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            time.sleep(0.3)
            target = {"udp": f"udp://127.0.0.1:{port}?pkt_size=1316",
                      "rtmp": f"rtmp://127.0.0.1:{port}/live/s",
                      "srt": f"srt://127.0.0.1:{port}?pkt_size=1316"}[kind]
            senders.append(sender(args.input, kind, target))
        return measure([p.pid for p in receivers], args.warmup, args.window) / args.streams
    finally:
        for p in senders + receivers:
            p.terminate()
        for p in senders + receivers:
            p.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dvr", required=True)
    ap.add_argument("--input", required=True)
    ap.add_argument("--scratch", required=True)
    ap.add_argument("--streams", type=int, default=int(os.environ.get("DVR_BENCH_STREAMS", "5")))
    ap.add_argument("--warmup", type=float, default=10.0)
    ap.add_argument("--window", type=float, default=30.0)
    args = ap.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    scratch = tempfile.mkdtemp(dir=args.scratch)
    rows = []
    for kind in ("udp", "rtmp", "srt"):
        dvr = run_dvr(args, kind, scratch)
        ffmpeg = run_ffmpeg(args, kind, scratch)
        rows.append((kind, dvr, ffmpeg))
    udp_dvr = rows[0][1]
    print(f"\nCPU per 5 Mbps stream, {args.streams} streams, {args.window:.0f} s window "
          "(receiving side; percent of one core)")
    print(f"{'input':<6} {'dvr %':>8} {'ffmpeg -c copy %':>17} {'dvr vs udp':>11}")
    for kind, dvr, ffmpeg in rows:
        ratio = dvr / udp_dvr if udp_dvr > 0 else float("nan")
        print(f"{kind:<6} {dvr * 100:>8.2f} {ffmpeg * 100:>17.2f} {ratio:>10.2f}x")
    for kind, dvr, _ in rows[1:]:
        ratio = dvr / udp_dvr if udp_dvr > 0 else float("nan")
        print(f"{kind.upper()} within 2x of UDP: {'yes' if ratio <= 2 else 'no'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
