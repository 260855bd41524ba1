#!/usr/bin/env python3
"""Measures CPU time and peak memory of the segmenter and of ffmpeg's HLS muxer.

Called by bench/segmenter.sh, which makes the input. Each command runs
--runs times on a warm page cache; the table shows the medians.

CPU is user + system seconds of the child and everything it waited for, taken
from os.wait4 (microsecond resolution): that is the cost a server pays per
channel, independent of how many cores are idle.

Peak memory is the maximum resident set size as GNU time (/usr/bin/time %M)
reports it for the command. Not from wait4 or RUSAGE_CHILDREN: Linux keeps a
process's RSS high-water mark across exec, so a child forked from this Python
process would report at least Python's own ~17 MB whatever it ran, and
RUSAGE_CHILDREN is the maximum over every child so far. GNU time is a small C
program, so what it forks starts from its own ~2 MB. Its own CPU (about a
millisecond) is included in the CPU figure.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

# The targets: at least 10x less CPU than ffmpeg's segmenter, peak
# memory under 64 MB.
TARGET_CPU_RATIO = 10.0
TARGET_PEAK_MB = 64.0


@dataclass
class Sample:
    cpu_s: float
    user_s: float
    sys_s: float
    peak_mb: float
    wall_s: float


@dataclass
class Row:
    name: str
    samples: list[Sample]
    outputs: int

    def median(self, field: str) -> float:
        return statistics.median(getattr(s, field) for s in self.samples)


GNU_TIME = "/usr/bin/time"


def run_once(argv: list[str]) -> Sample:
    """Runs argv to completion, its output discarded, and returns its resource usage."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.monotonic()
        proc = subprocess.Popen(
            [GNU_TIME, "-f", "%M", "-o", report.name, *argv],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.monotonic() - start
        # Popen must not try to reap the child a second time.
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            sys.exit(f"benchmark command failed with status {proc.returncode}: {' '.join(argv)}")
        # The last line is %M, in kilobytes.
        peak_kb = int(report.read().split()[-1])
    return Sample(
        cpu_s=usage.ru_utime + usage.ru_stime,
        user_s=usage.ru_utime,
        sys_s=usage.ru_stime,
        peak_mb=peak_kb / 1024,
        wall_s=wall,
    )


def fresh_dir(path: str) -> str:
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def count_ts(path: str) -> int:
    return sum(1 for name in os.listdir(path) if name.endswith(".ts"))


def warm_page_cache(path: str) -> None:
    """Reads the input once so no measured run pays for the disk."""
    with open(path, "rb") as f:
        while f.read(1 << 20):
            pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dvr", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--scratch", required=True, help="directory for segment output, emptied per run")
    args = parser.parse_args()
    if not os.access(GNU_TIME, os.X_OK):
        sys.exit(f"{GNU_TIME} (GNU time) is missing: run 'make test-deps'")

    size_mb = os.path.getsize(args.input) / 1e6
    warm_page_cache(args.input)

    out_dir = os.path.join(args.scratch, "dvr")
    hls_dir = os.path.join(args.scratch, "hls")
    commands = [
        ("dvr inspect", [args.dvr, "inspect", args.input], None),
        ("dvr inspect --out", [args.dvr, "inspect", args.input, "--out", out_dir], out_dir),
        (
            "ffmpeg -f hls",
            [
                "ffmpeg", "-hide_banner", "-nostdin", "-v", "error", "-y",
                "-i", args.input, "-c", "copy",
                "-f", "hls", "-hls_time", "2", "-hls_list_size", "0",
                os.path.join(hls_dir, "x.m3u8"),
            ],
            hls_dir,
        ),
    ]

    rows: list[Row] = []
    for name, argv, writes_to in commands:
        samples = []
        outputs = 0
        for _ in range(args.runs):
            # Emptying the output directory is not part of the measurement.
            for d in (out_dir, hls_dir):
                fresh_dir(d)
            samples.append(run_once(argv))
            if writes_to:
                outputs = count_ts(writes_to)
        rows.append(Row(name, samples, outputs))
    shutil.rmtree(args.scratch, ignore_errors=True)

    print()
    print(f"input: {args.input} ({size_mb:.0f} MB), median of {args.runs} runs, warm page cache")
    print()
    # user and sys are shown apart because reading and writing 400 MB through
    # the page cache is kernel time that no user-space optimisation removes.
    print(
        f"{'command':<20} {'CPU s':>8} {'user s':>8} {'sys s':>8} {'peak MB':>8} "
        f"{'wall s':>8} {'MB/CPU-s':>9} {'segments':>9}"
    )
    for row in rows:
        cpu = row.median("cpu_s")
        rate = size_mb / cpu if cpu > 0 else float("inf")
        segments = str(row.outputs) if row.outputs else "-"
        print(
            f"{row.name:<20} {cpu:>8.3f} {row.median('user_s'):>8.3f} {row.median('sys_s'):>8.3f} "
            f"{row.median('peak_mb'):>8.1f} "
            f"{row.median('wall_s'):>8.2f} {rate:>9.0f} {segments:>9}"
        )

    ffmpeg_cpu = rows[2].median("cpu_s")
    print()
    # The targets are for the segmenter itself (`dvr inspect`); the
    # --out row adds the kernel's cost of writing 400 MB, shown for comparison.
    for index, row in enumerate(rows[:2]):
        cpu = row.median("cpu_s")
        ratio = ffmpeg_cpu / cpu if cpu > 0 else float("inf")
        print(f"ffmpeg / {row.name}: {ratio:.1f}x less CPU, peak {row.median('peak_mb'):.1f} MB")
        if index == 0:
            judged_ratio, judged_peak = ratio, row.median("peak_mb")
    print()
    cpu_ok = judged_ratio >= TARGET_CPU_RATIO
    mem_ok = judged_peak < TARGET_PEAK_MB
    print(
        f"target for dvr inspect: >= {TARGET_CPU_RATIO:.0f}x less CPU than ffmpeg: "
        f"{'met' if cpu_ok else 'NOT met'} ({judged_ratio:.1f}x); "
        f"peak < {TARGET_PEAK_MB:.0f} MB: {'met' if mem_ok else 'NOT met'} ({judged_peak:.1f} MB)"
    )


if __name__ == "__main__":
    main()
