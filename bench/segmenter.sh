#!/usr/bin/env bash
# `make bench`: the segmenter's CPU time and peak memory beside ffmpeg's HLS
# segmenter on the same 10-minute 1080p 5 Mbps H.264+AAC transport stream.
# What is measured and why: bench/README.md.
#
# Environment:
#   DVR_BIN          the dvr binary (default: $CARGO_TARGET_DIR/release/dvr,
#                    which `make bench` builds first)
#   DVR_BENCH_CACHE  where the input (bench/input.sh) and scratch output live
#                    (default: $HOME/.cache/dvr/bench)
#   DVR_BENCH_RUNS   repetitions per command; the median is reported (default 3)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}
runs=${DVR_BENCH_RUNS:-3}

for tool in ffmpeg python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done
[ -x "$dvr" ] || { echo "no dvr binary at $dvr: run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }

input=$("$here/input.sh")

exec python3 "$here/measure.py" --dvr "$dvr" --input "$input" --runs "$runs" --scratch "$cache/out"
