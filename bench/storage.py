#!/usr/bin/env python3
"""Archive on S3: requests per stream-hour and upload throughput.

Called by bench/storage.sh. Everything runs against a real S3 server on
loopback, s3s-fs, which checks signatures and writes objects to a temporary
directory.

1. Requests per stream-hour. `archive_hour` (services/recorder/examples)
   records one hour of the 5 Mbps input through the real recorder with a
   1 h copy interval, exactly the copy `dvr run` makes each hour, to s3s-fs
   behind a counting proxy. The proxy counts the requests by method. It runs
   twice: as configured (one streamed PUT per chunk), and with
   `single_put_max: 0` (a multipart upload in 16 MiB parts). The peer is a
   store that writes every 2 s segment as its own object: 1,800 PUTs an hour.

2. Upload throughput of a 1 GB chunk: `put_file` (crates/storage/examples)
   against boto3's `upload_file` (multipart, 8 MB parts, 10 threads), the
   same file to the same server in the same run, best of three each.

Target (issue 4): at most 3 PUTs per stream-hour; upload at least as fast as
boto3. The script prints whether each is met and exits 0 either way.
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
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ACCESS_KEY = "benchaccess"
SECRET_KEY = "benchsecret0123456789"
TARGET_PUTS_PER_HOUR = 3
PER_SEGMENT_PUTS_PER_HOUR = 1800
GB = 1_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited early")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"{what} did not listen on {port}")


class CountingProxy(ThreadingHTTPServer):
    """Forwards every request to the S3 server unchanged, streaming bodies,
    and counts requests by method (multipart parts are `PUT ?partNumber`)."""

    daemon_threads = True

    def __init__(self, upstream: int):
        self.upstream = upstream
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), ProxyHandler)


class ProxyHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # quiet
        pass

    def forward(self) -> None:
        server: CountingProxy = self.server  # type: ignore[assignment]
        kind = self.command
        if "partNumber=" in self.path:
            kind += " part"
        elif "uploads" in self.path or "uploadId=" in self.path:
            kind += " multipart"
        with server.lock:
            server.counts[kind] += 1
        length = int(self.headers.get("Content-Length") or 0)
        conn = http.client.HTTPConnection("127.0.0.1", server.upstream, timeout=600)
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        for k, v in self.headers.items():
            conn.putheader(k, v)
        conn.endheaders()
        left = length
        while left > 0:
            block = self.rfile.read(min(left, 1 << 20))
            if not block:
                break
            conn.send(block)
            left -= len(block)
        resp = conn.getresponse()
        body = resp.read()
        self.send_response_only(resp.status, resp.reason)
        for k, v in resp.getheaders():
            if k.lower() not in ("transfer-encoding", "content-length", "connection"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward


def s3_env(endpoint: str) -> dict[str, str]:
    return {**os.environ, "AWS_ENDPOINT_URL": endpoint, "AWS_REGION": "us-east-1",
            "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}


def run(argv: list[str], env: dict[str, str]) -> dict[str, str]:
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{' '.join(argv)} failed:\n{out.stderr}{out.stdout}")
    line = out.stdout.strip().splitlines()[-1]
    return dict(part.split("=", 1) for part in line.split())


def requests_per_hour(archive_hour: str, s3_port: int, input_path: str) -> int:
    print("\nRequests against the store per stream-hour (1 h copy interval, 5 Mbps)\n")
    print(f"{'':34} {'PUT':>6} {'other':>6} {'upload MB/s':>12}")
    puts_as_configured = 0
    for label, extra in (("dvr (one streamed PUT per chunk)", []),
                         ("dvr with 16 MiB multipart parts", ["--parts"])):
        proxy = CountingProxy(s3_port)
        thread = threading.Thread(target=proxy.serve_forever, daemon=True)
        thread.start()
        endpoint = f"http://127.0.0.1:{proxy.server_address[1]}"
        result = run([archive_hour, "--archive", f"s3://bench/hour{len(extra)}", "--input", input_path,
                      "--hours", "1"] + extra, s3_env(endpoint))
        proxy.shutdown()
        counts = proxy.counts
        # The start-up check (a listing) and bucket probes are once per process,
        # not per hour; they are left out of the figure and shown apart.
        puts = sum(v for k, v in counts.items() if k.startswith("PUT"))
        other = sum(v for k, v in counts.items() if not k.startswith("PUT"))
        if not extra:
            puts_as_configured = puts
        print(f"{label:34} {puts:6d} {other:6d} {float(result['mb_per_s']):12.0f}"
              f"   ({', '.join(f'{k}: {v}' for k, v in sorted(counts.items()))})")
    print(f"{'an object per 2 s segment':34} {PER_SEGMENT_PUTS_PER_HOUR:6d}")
    verdict = "met" if puts_as_configured <= TARGET_PUTS_PER_HOUR else "NOT met"
    print(f"target at most {TARGET_PUTS_PER_HOUR} PUTs per stream-hour: {verdict}")
    return puts_as_configured


def upload_throughput(put_file: str, s3_port: int, scratch: str) -> None:
    import boto3  # noqa: PLC0415 (checked by storage.sh)
    from boto3.s3.transfer import TransferConfig  # noqa: PLC0415

    path = os.path.join(scratch, "chunk-1GB.ts")
    with open(path, "wb") as f:
        block = os.urandom(1 << 20)
        for _ in range(GB // (1 << 20)):
            f.write(block)
        f.write(block[: GB % (1 << 20)])
    endpoint = f"http://127.0.0.1:{s3_port}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id=ACCESS_KEY, aws_secret_access_key=SECRET_KEY)
    rows: dict[str, list[float]] = {"dvr put_file (one streamed PUT)": [],
                                    "dvr put_file --parts (16 MiB)": [],
                                    "boto3 upload_file (default)": []}
    for _ in range(3):
        for label, extra in (("dvr put_file (one streamed PUT)", []),
                             ("dvr put_file --parts (16 MiB)", ["--parts"])):
            r = run([put_file, "--archive", "s3://bench", "--file", path, "--key", "up/dvr.ts"] + extra,
                    s3_env(endpoint))
            rows[label].append(GB / 1e6 / float(r["seconds"]))
        began = time.monotonic()
        client.upload_file(path, "bench", "up/boto3.ts", Config=TransferConfig())
        rows["boto3 upload_file (default)"].append(GB / 1e6 / (time.monotonic() - began))
    print("\nUpload of a 1 GB chunk to s3s-fs on loopback, best of 3\n")
    print(f"{'':34} {'MB/s':>8}")
    for label, speeds in rows.items():
        print(f"{label:34} {max(speeds):8.0f}")
    ours = max(rows["dvr put_file (one streamed PUT)"])
    theirs = max(rows["boto3 upload_file (default)"])
    verdict = "met" if ours >= theirs else "NOT met"
    print(f"target at least as fast as boto3: {verdict} ({ours / theirs:.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--s3s-fs", required=True)
    parser.add_argument("--archive-hour", required=True)
    parser.add_argument("--put-file", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--scratch", required=True)
    args = parser.parse_args()

    shutil.rmtree(args.scratch, ignore_errors=True)
    os.makedirs(args.scratch)
    root = tempfile.mkdtemp(dir=args.scratch)
    os.makedirs(os.path.join(root, "bench"))
    port = free_port()
    server = subprocess.Popen([args.s3s_fs, "--host", "127.0.0.1", "--port", str(port),
                               "--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY, root],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, server, "s3s-fs")
        requests_per_hour(args.archive_hour, port, args.input)
        upload_throughput(args.put_file, port, args.scratch)
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(args.scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
