#!/usr/bin/env python3
"""Distributed-mode benchmarks: latency through NATS, streams per ingest.

Called by bench/distributed.sh with the nats-server binary and the 5 Mbps
input of bench/input.sh; each measurement starts its own nats-server on a
fresh store. The same sender, keyframe bookkeeping and poller
as bench/live.py, but the DVR is split the way a cluster runs it: one
`dvr run --services ingest,recorder` process appends to the live log on
JetStream, and a separate `dvr run --services packager` process serves the
playlist from it, so every segment crosses NATS (descriptor and bytes)
before a player can see it.

1. Latency (one stream, 60 s): send time of the keyframe that closes a
   segment to the segment's appearance in the packager's live playlist,
   beside the same figure with both services in one embedded process (the
   peer: what distribution costs). Target p99 under 250 ms.

2. Capacity: N streams (10, 20, 40, 80, …) sent to one ingest+recorder
   process for 25 s each, latency measured on one of them at the
   packager; the figure is the largest N whose p99 stays under 1 s (the
   goal is 100 on this 2-core machine). Only meaningful on an idle
   machine.

Exits 0 whatever the figures: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from live import (  # noqa: E402  (a sibling script, not a package)
    bitrate_of, free_port, keyframe_datagrams, newest_seq, percentile, send, stop)

TARGET_P99_MS = 250.0
CAPACITY_LIMIT_MS = 1000.0


def write_config(work: str, streams: dict[str, int]) -> str:
    config = os.path.join(work, "dvr.yaml")
    with open(config, "w") as f:
        f.write('version: 1\nhttp: { listen: "127.0.0.1:0" }\n')
        f.write(f"archive: file://{work}/archive\nstreams:\n")
        for name, port in streams.items():
            f.write(f'  {name}:\n    inputs: [ "udp://127.0.0.1:{port}" ]\n')
            f.write("    dvr: { depth: 1d, segment_duration: 2s, copy_interval: 1m }\n")
    return config


def start(dvr: str, work: str, config: str, name: str, extra: list[str]) -> tuple[subprocess.Popen, int]:
    port = free_port()
    log = open(os.path.join(work, f"{name}.log"), "w")
    proc = subprocess.Popen(
        [dvr, "run", "--config", config, "--data-dir", os.path.join(work, name),
         "--listen", f"127.0.0.1:{port}", *extra],
        stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited early; see {work}/{name}.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return proc, port
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"{name} was not ready within 30 s; see {work}/{name}.log")


def measure(data: bytes, bitrate: float, seconds: float, ports: list[int], probe: str,
            http_port: int, work: str) -> list[float]:
    """Sends to every port, polls `probe`'s live playlist; returns latencies (ms)."""
    keyframes = keyframe_datagrams(data[: int(bitrate / 8 * (seconds + 5))])
    sent_path = os.path.join(work, "keyframes.txt")
    sender = multiprocessing.Process(target=send, args=(data, ports, bitrate, seconds, keyframes, sent_path))
    sender.start()
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    seen = None
    appear: list[float] = []
    while sender.is_alive():
        conn.request("GET", f"/{probe}/index.m3u8")
        resp = conn.getresponse()
        body = resp.read().decode()
        now = time.monotonic()
        seq = newest_seq(body) if resp.status == 200 else None
        if seq is not None and seq != seen:
            if seen is not None:
                appear.append(now)
            seen = seq
        time.sleep(0.001)
    sender.join()
    with open(sent_path) as f:
        sent = [float(line) for line in f if line.strip()]
    lat = []
    for t in appear:
        before = [s for s in sent if s <= t]
        if before:
            lat.append((t - before[-1]) * 1000)
    return lat


def start_nats(nats_server: str, work: str) -> tuple[subprocess.Popen, str]:
    """A nats-server with JetStream on a fresh store (each step starts
    from an empty streams bucket)."""
    port = free_port()
    log = open(os.path.join(work, "nats.log"), "w")
    proc = subprocess.Popen([nats_server, "-js", "-a", "127.0.0.1", "-p", str(port),
                             "-sd", os.path.join(work, "nats")], stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    sys.exit("nats-server did not listen within 20 s")


def run_split(dvr: str, nats_server: str, data: bytes, bitrate: float, seconds: float, streams: int,
              work: str) -> list[float]:
    """Ingest+recorder in one process, the packager in another, over NATS."""
    os.makedirs(work)
    server, nats = start_nats(nats_server, work)
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(streams)]
    names = {f"s{i}": p for i, p in enumerate(ports)}
    config = write_config(work, names)
    node = os.path.basename(work)
    ingest, _ = start(dvr, work, config, "ingest",
                      ["--nats", nats, "--services", "ingest,recorder", "--node-id", f"{node}-i"])
    packager, http_port = start(dvr, work, config, "packager",
                                ["--nats", nats, "--services", "packager", "--node-id", f"{node}-p"])
    try:
        return measure(data, bitrate, seconds, ports, "s0", http_port, work)
    finally:
        stop(ingest)
        stop(packager)
        stop(server)


def run_embedded(dvr: str, data: bytes, bitrate: float, seconds: float, work: str) -> list[float]:
    os.makedirs(work)
    port = free_port(socket.SOCK_DGRAM)
    config = write_config(work, {"s0": port})
    proc, http_port = start(dvr, work, config, "embedded", [])
    try:
        return measure(data, bitrate, seconds, [port], "s0", http_port, work)
    finally:
        stop(proc)


def row(name: str, lat: list[float]) -> None:
    if not lat:
        print(f"{name:34} no segments seen")
        return
    print(f"{name:34} {len(lat):9d} {statistics.median(lat):8.1f} {percentile(lat, 99):8.1f} {max(lat):8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dvr", required=True)
    parser.add_argument("--nats-server", required=True, help="the nats-server binary")
    parser.add_argument("--input", required=True)
    parser.add_argument("--input-seconds", type=float, default=600.0)
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--ramp", default=os.environ.get("DVR_BENCH_RAMP", "10,20,40,80,120"))
    parser.add_argument("--ramp-seconds", type=float, default=25.0)
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()

    bitrate = bitrate_of(args.input, args.input_seconds)
    with open(args.input, "rb") as f:
        data = f.read(int(bitrate / 8 * 90))
    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    work = tempfile.mkdtemp(dir=args.scratch)

    print("\nLatency from the keyframe that closes a segment to the segment in a live playlist")
    print(f"(one 5 Mbps stream over UDP on loopback, {args.latency_seconds:.0f} s, polled every ~1 ms)\n")
    print(f"{'':34} {'segments':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    split = run_split(args.dvr, args.nats_server, data, bitrate, args.latency_seconds, 1, os.path.join(work, "split"))
    row("ingest | NATS | packager", split)
    row("embedded (one process, peer)", run_embedded(args.dvr, data, bitrate, args.latency_seconds,
                                                     os.path.join(work, "embedded")))
    if split:
        verdict = "met" if percentile(split, 99) < TARGET_P99_MS else "NOT met"
        print(f"target p99 < {TARGET_P99_MS:.0f} ms through NATS: {verdict}")

    print(f"\nStreams one ingest+recorder process carries before the p99 passes {CAPACITY_LIMIT_MS:.0f} ms")
    print(f"({args.ramp_seconds:.0f} s per step, latency of stream s0 at a separate packager)\n")
    print(f"{'streams':>34} {'segments':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    carried = 0
    for n in [int(x) for x in args.ramp.split(",") if x]:
        lat = run_split(args.dvr, args.nats_server, data, bitrate, args.ramp_seconds, n,
                        os.path.join(work, f"ramp-{n}"))
        row(str(n), lat)
        if not lat or percentile(lat, 99) >= CAPACITY_LIMIT_MS:
            break
        carried = n
    print(f"carried: {carried} streams of {bitrate / 1e6:.1f} Mbps (goal 100)")
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
