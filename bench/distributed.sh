#!/usr/bin/env bash
# `make bench`, distributed part: latency from ingest through NATS to a
# packager's live playlist, and how many 5 Mbps streams one ingest+recorder
# process carries. What is measured and why: bench/distributed.py.
#
# Environment:
#   DVR_BIN           the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_CACHE   where the input is kept (default $HOME/.cache/dvr/bench)
#   DVR_BENCH_RAMP    stream counts of the capacity ramp (default 10,20,40,80,120)
#   NATS_SERVER_BIN   nats-server (default: the one make test-deps installs)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}
nats=${NATS_SERVER_BIN:-${DVR_TOOLS_DIR:-$HOME/.cache/dvr/tools}/bin/nats-server}

for tool in ffmpeg python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done
[ -x "$nats" ] || { echo "no nats-server at $nats: run 'make test-deps'" >&2; exit 1; }
[ -x "$dvr" ] || { echo "no dvr binary at $dvr: run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }

input=$("$here/input.sh")
exec python3 "$here/distributed.py" --dvr "$dvr" --nats-server "$nats" --input "$input" --scratch "$cache/distributed"
