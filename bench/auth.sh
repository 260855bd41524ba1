#!/usr/bin/env bash
# `make bench`, auth part. Two figures, each beside its peer in the same run:
#
# 1. Packager requests/s for a session whose allow is cached, beside the
#    same request on a stream with auth off (target: within 5 %). One
#    `dvr run` serves two streams looping the same clip, `open` (no policy)
#    and `locked` (securetoken); wrk asks for each one's live playlist, with
#    the same `?token=` query, with the same connections, alternating.
# 2. Auth decisions/s for new sessions, in process and through a real
#    nats-server (services/auth/benches/decisions.rs).
#
# Environment:
#   DVR_BIN             the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_SECONDS   seconds per wrk run (default 10)
#   DVR_BENCH_CONNS     wrk connections (default 32)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
secs=${DVR_BENCH_SECONDS:-10}
conns=${DVR_BENCH_CONNS:-32}

if ! command -v wrk >/dev/null; then
  echo "installing wrk (the load generator)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
for tool in python3 curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done
[ -x "$dvr" ] || { echo "no dvr binary at $dvr: run 'make build' (or 'make bench', which builds it)" >&2; exit 1; }

work=$(mktemp -d)
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
clip=$repo/testdata/h264_aac_720p.ts
secret=bench-secret
cat > "$work/dvr.yaml" <<YAML
version: 1
http: { listen: "127.0.0.1:$port" }
streams:
  open:   { inputs: [ "file://$clip?loop=true" ] }
  locked: { inputs: [ "file://$clip?loop=true" ], auth: "securetoken://$secret" }
YAML
RUST_LOG=warn "$dvr" run --config "$work/dvr.yaml" --data-dir "$work/data" >/dev/null 2>"$work/dvr.log" &
pid=$!

# The seeds' securetoken for 127.0.0.1, valid for an hour.
token=$(python3 - "$secret" <<'PY'
import hashlib, sys, time
secret, stream, ip, salt = sys.argv[1], "locked", "127.0.0.1", "benchsalt"
start = int(time.time()) - 60
end = start + 3600
print(hashlib.sha1(f"{stream}{ip}{start}{end}{secret}{salt}".encode()).hexdigest() + salt + str(end) + str(start))
PY
)
# The same request on both streams, token included (segment URIs carry it
# either way, so both answers are the same size): only the gate differs.
open_url="http://127.0.0.1:$port/open/index.m3u8?token=$token"
locked_url="http://127.0.0.1:$port/locked/index.m3u8?token=$token"
for i in $(seq 1 120); do
  if curl -sf -o /dev/null "$open_url" && curl -sf -o /dev/null "$locked_url"; then break; fi
  [ "$i" = 120 ] && { echo "dvr never served both playlists; its log:" >&2; cat "$work/dvr.log" >&2; exit 1; }
  sleep 0.5
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/locked/index.m3u8")" = 403 ] \
  || { echo "the locked stream serves without a token: the benchmark would measure nothing" >&2; exit 1; }

rps() { wrk -t2 -c"$conns" -d"${secs}s" "$1" | awk '/Requests\/sec/ {print $2}'; }
declare -a off on
for round in 1 2 3; do
  off+=("$(rps "$open_url")")
  on+=("$(rps "$locked_url")")
done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

python3 - "${off[@]}" "${on[@]}" <<'PY'
import sys
v = [float(x) for x in sys.argv[1:]]
n = len(v) // 2
off, on = max(v[:n]), max(v[n:])
print("packager live playlist, requests/s (wrk, best of 3 alternating runs):")
print(f"  {'auth off':<28} {off:>10.0f}")
print(f"  {'securetoken, cached allow':<28} {on:>10.0f}   ({(on - off) / off * 100:+.1f} %, target within 5 %)")
PY

cd "$repo"
cargo bench -q -p dvr-auth --bench decisions
