#!/usr/bin/env bash
# `make bench`, live part: latency from ingest to the live playlist and CPU
# per recorded 5 Mbps stream, each beside ffmpeg's HLS muxer fed the same
# datagrams. What is measured and why: bench/README.md and bench/live.py.
#
# Environment:
#   DVR_BIN            the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_CACHE    where the input is kept (default $HOME/.cache/dvr/bench)
#   DVR_BENCH_STREAMS  streams recorded at once in the CPU phase (default 20)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}

for tool in ffmpeg python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done
[ -x "$dvr" ] || { echo "no dvr binary at $dvr: run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }

input=$("$here/input.sh")
exec python3 "$here/live.py" --dvr "$dvr" --input "$input" --scratch "$cache/live"
