#!/usr/bin/env python3
"""Restreaming between origins: how late a restreamer's live playlist is
behind its source's, and what following many streams costs.

Called by bench/cluster.sh with the 5 Mbps input of bench/input.sh. Two
`dvr run` origins on loopback share a cluster key: the source records
streams from the input file (looped, paced in real time), the restreamer
follows each of them through the segment feed (`m4f://`) into its own live
log and archive.

1. Latency. One stream. A poller fetches `/S/index.m3u8` from both origins
   about every millisecond and notes when each seq first appears on each;
   the figure is the restreamer's time minus the source's, per seq.
   Target (issue 23): p99 under 100 ms.

2. Failover. The restreamer reaches the source through a TCP relay, with a
   second origin (restreaming the same source) as its backup; the relay is
   cut, and the figure is how much later than on the source each of the
   next seqs appears on the restreamer (the first one carries the failover:
   noticing the cut, the pause, the backup's feed).

3. Many streams. N streams (DVR_BENCH_RESTREAMS, default 100) restreamed at
   once. After a warm-up, the restreamer's CPU (user + system from
   /proc/PID/stat) over a window, per stream; then whether every stream's
   newest seq on the restreamer is within one segment of the source's.
   Target: one origin restreams 100 streams.

4. Backfill. The source records the whole input unpaced (`pace=false`,
   some 400 MB of tape in seconds); then a restreamer with `dvr: {
   replicate: true, replicate_rate: 1G }` starts, follows the newest
   segment and copies the rest of the source's tape into its own archive
   through the segment feed. The figure is the bytes copied over the time
   from the restreamer's start to the last chunk copied, and its CPU; next
   to it, a plain HTTP download of the same tape from the source
   (`archive-FROM-DUR.ts` with curl) on the same loopback, the ceiling of
   one stream of those bytes. Target (issue 23): 200 MB/s within the rate
   limit.

No peer is named for restreaming: ffmpeg has no segment-exact restreaming
to set beside it. The script prints whether each target is met and exits 0 either
way: it is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time

from live import cpu_seconds, free_port, newest_seq, percentile, stop

KEY = "bench-cluster-key-0123456789abcdef"
# Every origin started, stopped however the run ends: 100 recorded streams
# write about 60 MB/s each origin, a left-over pair fills a disk in minutes.
STARTED: list[subprocess.Popen] = []
TARGET_P99_MS = 100.0
TARGET_STREAMS = 100


def start_origin(dvr: str, work: str, port: int, inputs: dict[str, str | list[str]],
                 dvr_extra: str = "") -> subprocess.Popen:
    os.makedirs(work, exist_ok=True)
    config = os.path.join(work, "dvr.yaml")
    with open(config, "w") as f:
        f.write(f'version: 1\nhttp: {{ listen: "127.0.0.1:{port}" }}\n')
        f.write(f'archive: file://{work}/archive\ncluster_key: "${{DVR_CLUSTER_KEY}}"\nstreams:\n')
        for name, urls in inputs.items():
            listed = ", ".join(f'"{u}"' for u in ([urls] if isinstance(urls, str) else urls))
            f.write(f'  {name}:\n    inputs: [ {listed} ]\n')
            f.write(f"    dvr: {{ depth: 1d, segment_duration: 2s, copy_interval: 1m{dvr_extra} }}\n")
    log = open(os.path.join(work, "dvr.log"), "w")
    proc = subprocess.Popen([dvr, "run", "--config", config, "--data-dir", os.path.join(work, "data")],
                            stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "RUST_LOG": "warn", "DVR_CLUSTER_KEY": KEY})
    STARTED.append(proc)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"dvr run exited early; see {work}/dvr.log")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return proc
        except OSError:
            pass
        time.sleep(0.05)
    sys.exit(f"dvr run did not answer within 30 s; see {work}/dvr.log")


def head(conn: http.client.HTTPConnection, stream: str) -> int | None:
    conn.request("GET", f"/{stream}/index.m3u8")
    resp = conn.getresponse()
    body = resp.read().decode()
    return newest_seq(body) if resp.status == 200 else None


def latency_phase(dvr: str, source_url: str, seconds: float, work: str) -> None:
    a, b = free_port(), free_port()
    source = start_origin(dvr, os.path.join(work, "lat-a"), a, {"lat": source_url})
    restreamer = start_origin(dvr, os.path.join(work, "lat-b"), b, {"lat": f"m4f://127.0.0.1:{a}/lat"})
    conns = {"source": http.client.HTTPConnection("127.0.0.1", a, timeout=5),
             "restreamer": http.client.HTTPConnection("127.0.0.1", b, timeout=5)}
    first_seen: dict[str, dict[int, float]] = {"source": {}, "restreamer": {}}
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for who, conn in conns.items():
            seq = head(conn, "lat")
            now = time.monotonic()
            if seq is not None and seq not in first_seen[who]:
                first_seen[who][seq] = now
        time.sleep(0.001)
    stop(restreamer)
    stop(source)
    # The first seq each saw may have been made before polling started.
    seqs = sorted(set(first_seen["source"]) & set(first_seen["restreamer"]))[1:]
    lat = [(first_seen["restreamer"][s] - first_seen["source"][s]) * 1000 for s in seqs]
    print("\nRestreaming latency: a segment in the source's live playlist to the same seq")
    print(f"in the restreamer's (one 5 Mbps stream, {seconds:.0f} s, both polled every ~1 ms)\n")
    if not lat:
        print("no segment seen on both origins; see the logs in", work)
        return
    print(f"{'segments':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{len(lat):9d} {statistics.median(lat):8.1f} {percentile(lat, 99):8.1f} {max(lat):8.1f}")
    verdict = "met" if percentile(lat, 99) < TARGET_P99_MS else "NOT met"
    print(f"target p99 < {TARGET_P99_MS:.0f} ms: {verdict}")


class Relay:
    """A TCP relay on loopback to `target`, cut at once by `cut()`."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = [self.listener]
        self.lock = threading.Lock()
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self) -> None:
        while True:
            try:
                inbound, _ = self.listener.accept()
                outbound = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                return
            with self.lock:
                self.sockets += [inbound, outbound]
            for a, b in ((inbound, outbound), (outbound, inbound)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    @staticmethod
    def pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass

    def cut(self) -> None:
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()


def feeds_opened(conn: http.client.HTTPConnection) -> float:
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith("dvr_packager_feeds_opened_total "):
            return float(line.split()[1])
    return 0.0


def failover_phase(dvr: str, source_url: str, work: str, cuts: int) -> None:
    a, c = free_port(), free_port()
    source = start_origin(dvr, os.path.join(work, "fo-a"), a, {"fo": source_url})
    backup = start_origin(dvr, os.path.join(work, "fo-c"), c, {"fo": f"m4f://127.0.0.1:{a}/fo"})
    conn_a = http.client.HTTPConnection("127.0.0.1", a, timeout=5)
    conn_c = http.client.HTTPConnection("127.0.0.1", c, timeout=5)
    switch_ms, first_ms, later_ms, broken = [], [], [], 0
    for i in range(cuts):
        b = free_port()
        relay = Relay(a)
        restreamer = start_origin(dvr, os.path.join(work, f"fo-b{i}"), b,
                                  {"fo": [f"m4f://127.0.0.1:{relay.port}/fo", f"m4f://127.0.0.1:{c}/fo"]})
        conn_b = http.client.HTTPConnection("127.0.0.1", b, timeout=5)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            head_a, head_b = head(conn_a, "fo"), head(conn_b, "fo")
            if head_a is not None and head_b is not None and head_b >= head_a:
                break
            time.sleep(0.05)
        # Cut at a random point inside a segment.
        time.sleep(0.5 + (i * 0.37) % 1.5)
        opened_before = feeds_opened(conn_c)
        cut_seq = head(conn_a, "fo") or 0
        cut_at = time.monotonic()
        relay.cut()
        seen: dict[str, dict[int, float]] = {"a": {}, "b": {}}
        switched = None
        while time.monotonic() < cut_at + 7:
            for who, conn in (("a", conn_a), ("b", conn_b)):
                seq = head(conn, "fo")
                if seq is not None and seq > cut_seq and seq not in seen[who]:
                    seen[who][seq] = time.monotonic()
            if switched is None and feeds_opened(conn_c) > opened_before:
                switched = time.monotonic()
            time.sleep(0.001)
        if switched is not None:
            switch_ms.append((switched - cut_at) * 1000)
        common = sorted(set(seen["a"]) & set(seen["b"]))
        for k, seq in enumerate(common):
            (first_ms if k == 0 else later_ms).append((seen["b"][seq] - seen["a"][seq]) * 1000)
        got = sorted(seen["b"])
        if not got or got != list(range(cut_seq + 1, got[-1] + 1)):
            broken += 1
        stop(restreamer)
    stop(backup)
    stop(source)
    print("\nFailover: the relay to the source cut, the restreamer goes on from a second origin")
    print(f"restreaming the same source ({cuts} cuts, each at another point of a segment)\n")
    if not switch_ms or not first_ms:
        print("no failover seen; see the logs in", work)
        return
    print(f"{'':34} {'p50 ms':>8} {'max ms':>8}")
    print(f"{'cut to the backup feed opened':34} {statistics.median(switch_ms):8.1f} {max(switch_ms):8.1f}")
    print(f"{'first seq after the cut, behind':34} {statistics.median(first_ms):8.1f} {max(first_ms):8.1f}")
    if later_ms:
        print(f"{'later seqs, behind':34} {statistics.median(later_ms):8.1f} {max(later_ms):8.1f}")
    print(f"cuts where a seq after the cut was missing or out of order on the restreamer: {broken}/{cuts}")


def many_phase(dvr: str, source_url: str, streams: int, work: str) -> None:
    a, b = free_port(), free_port()
    names = [f"ch{i:03d}" for i in range(streams)]
    source = start_origin(dvr, os.path.join(work, "many-a"), a, {n: source_url for n in names})
    restreamer = start_origin(dvr, os.path.join(work, "many-b"), b,
                              {n: f"m4f://127.0.0.1:{a}/{n}" for n in names})
    warmup, window = 20.0, 30.0
    time.sleep(warmup)
    start_b, start_a = cpu_seconds(restreamer.pid), cpu_seconds(source.pid)
    time.sleep(window)
    used_b = cpu_seconds(restreamer.pid) - start_b
    used_a = cpu_seconds(source.pid) - start_a
    # A minute's chunks of every stream go to the archive at once on both
    # origins, so an answer may wait on the disk: slow ones are counted.
    conn_a = http.client.HTTPConnection("127.0.0.1", a, timeout=30)
    conn_b = http.client.HTTPConnection("127.0.0.1", b, timeout=30)
    keeping_up, slowest = 0, 0.0
    for n in names:
        asked = time.monotonic()
        head_b, head_a = head(conn_b, n), head(conn_a, n)
        slowest = max(slowest, time.monotonic() - asked)
        if head_a is not None and head_b is not None and head_b >= head_a - 1:
            keeping_up += 1
    stop(restreamer)
    stop(source)
    per_stream = used_b / window / streams
    print(f"\nRestreaming {streams} streams of 5 Mbps (after {warmup:.0f} s, over {window:.0f} s)\n")
    print(f"{'':12} {'CPU s/s':>8} {'% core/stream':>14} {'streams/core':>13}")
    print(f"{'restreamer':12} {used_b / window:8.2f} {per_stream * 100:14.2f} "
          f"{(1 / per_stream if per_stream else float('inf')):13.0f}")
    print(f"{'source':12} {used_a / window:8.2f} {used_a / window / streams * 100:14.2f} "
          "   (ingest, recorder and the feeds it serves)")
    print(f"streams whose newest seq on the restreamer is within one segment of the source's: "
          f"{keeping_up}/{streams} (slowest pair of playlists: {slowest * 1000:.0f} ms)")
    verdict = "met" if keeping_up == streams and streams >= TARGET_STREAMS else "NOT met"
    print(f"target: one origin restreams {TARGET_STREAMS} streams: {verdict}")


def metric(conn: http.client.HTTPConnection, series: str) -> float:
    conn.request("GET", "/metrics")
    for line in conn.getresponse().read().decode().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[1])
    return 0.0


def recorded_span(conn: http.client.HTTPConnection, stream: str) -> tuple[int, int] | None:
    conn.request("GET", f"/{stream}/recording_status.json")
    resp = conn.getresponse()
    body = resp.read()
    if resp.status != 200:
        return None
    span = json.loads(body).get(stream, {})
    return (span["from"], span["to"]) if "from" in span and "to" in span else None


def backfill_phase(dvr: str, input_path: str, work: str) -> None:
    a, b = free_port(), free_port()
    source = start_origin(dvr, os.path.join(work, "bf-a"), a, {"bf": f"file://{input_path}?pace=false"})
    conn_a = http.client.HTTPConnection("127.0.0.1", a, timeout=30)
    # The source's tape is whole when its ingest has read the file.
    last, steady = None, 0
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and steady < 10:
        seq = head(conn_a, "bf")
        steady = steady + 1 if seq is not None and seq == last else 0
        last = seq
        time.sleep(0.3)
    span = recorded_span(conn_a, "bf")
    if span is None:
        print("\nBackfill: the source recorded nothing; see the logs in", work)
        stop(source)
        return
    # The reference: the same tape as one HTTP download.
    target = os.path.join(work, "download.ts")
    url = f"http://127.0.0.1:{a}/bf/archive-{span[0]}-{span[1] - span[0] + 1}.ts"
    started = time.monotonic()
    subprocess.run(["curl", "-sf", "-o", target, url], check=False)
    download_s = time.monotonic() - started
    download_bytes = os.path.getsize(target) if os.path.exists(target) else 0
    # The replicating restreamer.
    restreamer = start_origin(dvr, os.path.join(work, "bf-b"), b, {"bf": f"m4f://127.0.0.1:{a}/bf"},
                              ", replicate: true, replicate_rate: 1G")
    started = time.monotonic()
    cpu_before = cpu_seconds(restreamer.pid)
    conn_b = http.client.HTTPConnection("127.0.0.1", b, timeout=30)
    copied, changed = 0.0, started
    first = None  # (when, bytes) of the first chunk seen copied
    while time.monotonic() - changed < 15 and time.monotonic() - started < 300:
        now = metric(conn_b, 'dvr_recorder_backfilled_bytes_total{stream="bf"}')
        if now > copied:
            copied, changed = now, time.monotonic()
            first = first or (changed, copied)
        time.sleep(0.05)
    cpu = cpu_seconds(restreamer.pid) - cpu_before
    took = changed - started
    stop(restreamer)
    stop(source)
    print("\nBackfill: a replicating restreamer copies the source's tape it lacks")
    print(f"({download_bytes / 1e6:.0f} MB of 5 Mbps tape on loopback, replicate_rate 1G)\n")
    print(f"{'':44} {'MB':>7} {'s':>6} {'MB/s':>7} {'CPU s':>6}")
    print(f"{'replication, restreamer start to last chunk':44} {copied / 1e6:7.0f} {took:6.1f} "
          f"{copied / 1e6 / took if took else 0:7.0f} {cpu:6.1f}")
    if first is not None and changed > first[0]:
        span_s, span_bytes = changed - first[0], copied - first[1]
        print(f"{'replication, first chunk copied to last':44} {span_bytes / 1e6:7.0f} {span_s:6.1f} "
              f"{span_bytes / 1e6 / span_s:7.0f}")
    print(f"{'curl archive-FROM-DUR.ts (source)':44} {download_bytes / 1e6:7.0f} {download_s:6.1f} "
          f"{download_bytes / 1e6 / download_s if download_s else 0:7.0f} {'':>6}")
    rate = copied / 1e6 / took if took else 0
    print(f"target >= 200 MB/s: {'met' if rate >= 200 else 'NOT met'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dvr", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--scratch", required=True)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("DVR_BENCH_SECS", "60")))
    parser.add_argument("--cuts", type=int, default=int(os.environ.get("DVR_BENCH_CUTS", "5")))
    parser.add_argument("--streams", type=int, default=int(os.environ.get("DVR_BENCH_RESTREAMS", "100")))
    parser.add_argument("--phases", default=os.environ.get("DVR_BENCH_CLUSTER_PHASES",
                                                           "backfill,latency,failover,many"))
    args = parser.parse_args()
    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    source_url = f"file://{args.input}?loop=true"
    try:
        phases = {
            "backfill": lambda: backfill_phase(args.dvr, args.input, args.scratch),
            "latency": lambda: latency_phase(args.dvr, source_url, args.seconds, args.scratch),
            "failover": lambda: failover_phase(args.dvr, source_url, args.scratch, args.cuts),
            "many": lambda: many_phase(args.dvr, source_url, args.streams, args.scratch),
        }
        for name in args.phases.split(","):
            if name not in phases:
                sys.exit(f"unknown phase {name!r} (known: {', '.join(phases)})")
            phases[name]()
            # Each phase's archives go before the next writes its own.
            for proc in STARTED:
                stop(proc)
            shutil.rmtree(args.scratch, ignore_errors=True)
            os.makedirs(args.scratch)
    finally:
        for proc in STARTED:
            stop(proc)
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
