#!/usr/bin/env bash
# `make bench`, restreaming part: how far a restreamer's live playlist is
# behind its source's, and the cost of restreaming many streams. What is
# measured and why: bench/README.md and bench/cluster.py.
#
# Environment:
#   DVR_BIN              the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_CACHE      where the input is kept (default $HOME/.cache/dvr/bench)
#   DVR_BENCH_SECS       length of the latency phase (default 60)
#   DVR_BENCH_RESTREAMS  streams restreamed at once (default 100)
#   DVR_BENCH_CLUSTER_PHASES  which parts run (default backfill,latency,failover,many)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}

command -v python3 >/dev/null || { echo "python3 is missing: run 'make test-deps'" >&2; exit 1; }
[ -x "$dvr" ] || { echo "no dvr binary at $dvr: run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }

input=$("$here/input.sh")
exec python3 "$here/cluster.py" --dvr "$dvr" --input "$input" --scratch "$cache/cluster"
