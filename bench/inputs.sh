#!/usr/bin/env bash
# `make bench`, inputs part: CPU per 5 Mbps stream of each input kind (UDP,
# RTMP publish, SRT listener) in one run, each beside ffmpeg's `-c copy` of the same
# input. What is measured and why: bench/README.md and bench/inputs.py.
#
# Environment:
#   DVR_BIN            the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_CACHE    where the input is kept (default $HOME/.cache/dvr/bench)
#   DVR_BENCH_STREAMS  streams per kind at once (default 5)
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
exec python3 "$here/inputs.py" --dvr "$dvr" --input "$input" --scratch "$cache/inputs"
