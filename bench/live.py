#!/usr/bin/env python3
"""Live recording benchmarks: playlist latency and CPU per recorded stream.

Called by bench/live.sh with the 5 Mbps input of bench/input.sh. Two phases,
each printing dvr beside ffmpeg's HLS muxer fed the same datagrams:

1. Latency. One stream is sent over UDP on loopback in real time, as 1316-byte
   datagrams at the file's constant bitrate, to `dvr run` and to
   `ffmpeg -c copy -f hls` at once. The sender notes when it sends each
   datagram that starts a video keyframe (the packet that lets a segmenter
   close the previous segment). A poller fetches `/S/index.m3u8` (and reads
   ffmpeg's playlist file) about every millisecond and notes when a new
   segment appears. Latency is appearance time minus the send time of the
   keyframe before it: an upper bound of "last packet of the segment to
   playlist", since it includes the wait for the audio that belongs to the
   closing segment.

2. CPU per stream. N streams (DVR_BENCH_STREAMS, default 20) of the same
   5 Mbps input are recorded by one `dvr run` (live log, recorder copying to
   a local archive every minute) for a minute, and by N ffmpeg processes for
   half a minute. CPU is user + system time from /proc/PID/stat over the
   window; the figure is CPU seconds per stream per second, and its inverse,
   streams per core.

The targets (issue 3): p99 latency under 50 ms, 100 streams per core. The
script prints whether each is met and exits 0 either way: it is a
measurement, not a test.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

DATAGRAM = 7 * 188
TARGET_P99_MS = 50.0
TARGET_STREAMS_PER_CORE = 100.0
CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def keyframe_datagrams(data: bytes) -> list[bool]:
    """For each datagram, whether it holds the start of a video keyframe PES
    (random access indicator, payload start, stream id 0xE0-0xEF)."""
    flags = []
    for d in range(0, len(data) - DATAGRAM + 1, DATAGRAM):
        found = False
        for p in range(d, d + DATAGRAM, 188):
            b1, b3 = data[p + 1], data[p + 3]
            if not (b1 & 0x40) or not (b3 & 0x20):
                continue
            af_len = data[p + 4]
            if af_len == 0 or not (data[p + 5] & 0x40):
                continue
            payload = p + 5 + af_len
            if payload + 4 <= p + 188 and data[payload:payload + 3] == b"\x00\x00\x01" \
                    and 0xE0 <= data[payload + 3] <= 0xEF:
                found = True
                break
        flags.append(found)
    return flags


def bitrate_of(path: str, duration_s: float) -> float:
    return os.path.getsize(path) * 8 / duration_s


def send(data: bytes, ports: list[int], bitrate: float, seconds: float,
         keyframes: list[bool] | None, out_path: str | None) -> None:
    """Sends `data` to every port in real time for `seconds`; writes the
    monotonic send times of keyframe datagrams to `out_path`."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    addrs = [("127.0.0.1", p) for p in ports]
    per_second = bitrate / 8 / DATAGRAM
    count = min(len(data) // DATAGRAM, int(per_second * seconds))
    sent_keyframes = []
    start = time.monotonic()
    i = 0
    while i < count:
        due = int((time.monotonic() - start) * per_second) + 1
        while i < min(due, count):
            chunk = data[i * DATAGRAM:(i + 1) * DATAGRAM]
            for addr in addrs:
                sock.sendto(chunk, addr)
            if keyframes is not None and keyframes[i]:
                sent_keyframes.append(time.monotonic())
            i += 1
        time.sleep(0.001)
    if out_path:
        with open(out_path, "w") as f:
            f.write("\n".join(str(t) for t in sent_keyframes))


def newest_seq(playlist: str) -> int | None:
    seq = None
    count = 0
    for line in playlist.splitlines():
        if line.startswith("#EXT-X-MEDIA-SEQUENCE:"):
            seq = int(line.split(":", 1)[1])
        elif line and not line.startswith("#"):
            count += 1
    if seq is None or count == 0:
        return None
    return seq + count - 1


def start_dvr(dvr: str, work: str, streams: dict[str, int], http_port: int) -> subprocess.Popen:
    config = os.path.join(work, "dvr.yaml")
    with open(config, "w") as f:
        f.write(f'version: 1\nhttp: {{ listen: "127.0.0.1:{http_port}" }}\n')
        f.write(f"archive: file://{work}/archive\nstreams:\n")
        for name, port in streams.items():
            f.write(f'  {name}:\n    inputs: [ "udp://127.0.0.1:{port}" ]\n')
            f.write("    dvr: { depth: 1d, segment_duration: 2s, copy_interval: 1m }\n")
    log = open(os.path.join(work, "dvr.log"), "w")
    proc = subprocess.Popen([dvr, "run", "--config", config, "--data-dir", os.path.join(work, "data")],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "RUST_LOG": "warn"})
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"dvr run exited early; see {work}/dvr.log")
        try:
            socket.create_connection(("127.0.0.1", http_port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    sys.exit("dvr run did not listen within 20 s")


def start_ffmpeg(work: str, name: str, port: int) -> subprocess.Popen:
    out = os.path.join(work, "ffmpeg", name)
    os.makedirs(out, exist_ok=True)
    return subprocess.Popen(
        ["ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
         "-i", f"udp://127.0.0.1:{port}?fifo_size=1000000&overrun_nonfatal=1",
         "-map", "0", "-c", "copy", "-f", "hls", "-hls_time", "2", "-hls_list_size", "6",
         os.path.join(out, "index.m3u8")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    # utime and stime are fields 14 and 15 (1-based), 12 and 13 after the name.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def latency_phase(dvr: str, data: bytes, bitrate: float, seconds: float, work: str) -> None:
    keyframes = keyframe_datagrams(data[: int(bitrate / 8 * (seconds + 5))])
    dvr_udp, ffmpeg_udp, http_port = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_DGRAM), free_port()
    os.makedirs(os.path.join(work, "latency"))
    proc = start_dvr(dvr, os.path.join(work, "latency"), {"lat": dvr_udp}, http_port)
    ff = start_ffmpeg(work, "lat", ffmpeg_udp)
    time.sleep(1.0)
    sent_path = os.path.join(work, "keyframes.txt")
    sender = multiprocessing.Process(target=send, args=(data, [dvr_udp, ffmpeg_udp], bitrate, seconds,
                                                        keyframes, sent_path))
    sender.start()
    conn = http.client.HTTPConnection("127.0.0.1", http_port, timeout=5)
    ff_playlist = os.path.join(work, "ffmpeg", "lat", "index.m3u8")
    seen = {"dvr": None, "ffmpeg": None}
    appear: dict[str, list[float]] = {"dvr": [], "ffmpeg": []}
    while sender.is_alive():
        conn.request("GET", "/lat/index.m3u8")
        resp = conn.getresponse()
        body = resp.read().decode()
        now = time.monotonic()
        texts = {"dvr": body if resp.status == 200 else ""}
        try:
            with open(ff_playlist) as f:
                texts["ffmpeg"] = f.read()
        except OSError:
            texts["ffmpeg"] = ""
        for who, text in texts.items():
            seq = newest_seq(text)
            if seq is not None and seq != seen[who]:
                if seen[who] is not None:
                    appear[who].append(now)
                seen[who] = seq
        time.sleep(0.001)
    sender.join()
    stop(proc)
    stop(ff)
    with open(sent_path) as f:
        sent = [float(line) for line in f if line.strip()]
    print("\nLatency from the keyframe that closes a segment to the segment in the live playlist")
    print(f"(one 5 Mbps stream over UDP on loopback, {seconds:.0f} s, polled every ~1 ms)\n")
    print(f"{'':10} {'segments':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    result = {}
    for who in ("dvr", "ffmpeg"):
        lat = []
        for t in appear[who]:
            before = [s for s in sent if s <= t]
            if before:
                lat.append((t - before[-1]) * 1000)
        if not lat:
            print(f"{who:10} no segments seen")
            continue
        result[who] = percentile(lat, 99)
        print(f"{who:10} {len(lat):9d} {statistics.median(lat):8.1f} {percentile(lat, 99):8.1f} {max(lat):8.1f}")
    if "dvr" in result:
        verdict = "met" if result["dvr"] < TARGET_P99_MS else "NOT met"
        print(f"target p99 < {TARGET_P99_MS:.0f} ms: {verdict}")


def cpu_phase(dvr: str, data: bytes, bitrate: float, streams: int, work: str) -> None:
    ports = [free_port(socket.SOCK_DGRAM) for _ in range(streams)]
    http_port = free_port()
    cpu_dir = os.path.join(work, "cpu")
    os.makedirs(cpu_dir, exist_ok=True)
    rows = []

    def measure(pids: list[int], warmup: float, window: float) -> float:
        time.sleep(warmup)
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(window)
        return sum(cpu_seconds(p) for p in pids) - before

    # dvr: one process, every stream, a copy to the archive each minute.
    proc = start_dvr(dvr, cpu_dir, {f"s{i}": p for i, p in enumerate(ports)}, http_port)
    sender = multiprocessing.Process(target=send, args=(data, ports, bitrate, 75, None, None))
    sender.start()
    window = 60.0
    used = measure([proc.pid], 10, window)
    sender.join()
    stop(proc)
    rows.append(("dvr run", used / window / streams))

    # ffmpeg: a process per stream remuxing to HLS, the usual glue.
    ffs = [start_ffmpeg(cpu_dir, f"s{i}", p) for i, p in enumerate(ports)]
    time.sleep(1.0)
    sender = multiprocessing.Process(target=send, args=(data, ports, bitrate, 45, None, None))
    sender.start()
    window = 30.0
    used = measure([f.pid for f in ffs], 10, window)
    sender.join()
    for f in ffs:
        stop(f)
    rows.append(("ffmpeg -f hls", used / window / streams))

    print(f"\nCPU per recorded stream ({streams} streams of {bitrate / 1e6:.1f} Mbps over UDP on loopback)\n")
    print(f"{'':14} {'CPU % per stream':>17} {'streams per core':>17}")
    for name, per in rows:
        print(f"{name:14} {per * 100:17.2f} {1 / per if per > 0 else float('inf'):17.0f}")
    dvr_per = rows[0][1]
    verdict = "met" if dvr_per > 0 and 1 / dvr_per >= TARGET_STREAMS_PER_CORE else "NOT met"
    print(f"target {TARGET_STREAMS_PER_CORE:.0f} streams per core: {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dvr", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--input-seconds", type=float, default=600.0,
                        help="duration of the input, for its bitrate")
    parser.add_argument("--latency-seconds", type=float, default=60.0)
    parser.add_argument("--streams", type=int, default=int(os.environ.get("DVR_BENCH_STREAMS", "20")))
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()

    bitrate = bitrate_of(args.input, args.input_seconds)
    with open(args.input, "rb") as f:
        data = f.read(int(bitrate / 8 * 90))
    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    work = tempfile.mkdtemp(dir=args.scratch)
    latency_phase(args.dvr, data, bitrate, args.latency_seconds, work)
    cpu_phase(args.dvr, data, bitrate, args.streams, work)
    shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
