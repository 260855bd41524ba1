#!/usr/bin/env bash
# `make bench`, auth part. Two figures, each beside its peer in the same run:
#
# 1. Packager requests/s for a session whose allow is cached, beside the
#    same request on a stream with auth off (target: within 5 %). One
#    `dvr run` serves two streams looping the same clip, `open` (no policy)
#    and `locked` (securetoken); wrk asks for each one's live playlist, with
#    the same `?token=` query, with the same connections. Runs alternate
#    open-locked, locked-open, ... once the live window is full (a playlist
#    still growing is cheaper, which would favour whichever runs first).
#    Then the same with 1,000 sessions (1,000 tokens) spread over the
#    requests, so the cache holds many sessions, not one hot one.
# 2. Auth decisions/s for new sessions, in process and through a real
#    nats-server (services/auth/benches/decisions.rs).
#
# Environment:
#   DVR_BIN             the dvr binary (default: $CARGO_TARGET_DIR/release/dvr)
#   DVR_BENCH_SECONDS   seconds per wrk run (default 6)
#   DVR_BENCH_ROUNDS    wrk runs per stream and case (default 6)
#   DVR_BENCH_CONNS     wrk connections (default 32)
#   DVR_BENCH_SESSIONS  sessions in the many-sessions case (default 1000)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
dvr=${DVR_BIN:-$target_dir/release/dvr}
secs=${DVR_BENCH_SECONDS:-6}
rounds=${DVR_BENCH_ROUNDS:-6}
conns=${DVR_BENCH_CONNS:-32}
sessions=${DVR_BENCH_SESSIONS:-1000}

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

# The seeds' securetoken for 127.0.0.1, valid for an hour: one per line,
# each with its own salt (so its own session).
python3 - "$secret" "$sessions" > "$work/tokens" <<'PY'
import hashlib, sys, time
secret, count, stream, ip = sys.argv[1], int(sys.argv[2]), "locked", "127.0.0.1"
start = int(time.time()) - 60
end = start + 3600
for i in range(max(count, 1)):
    salt = f"benchsalt{i}"
    print(hashlib.sha1(f"{stream}{ip}{start}{end}{secret}{salt}".encode()).hexdigest() + salt + str(end) + str(start))
PY
token=$(head -n1 "$work/tokens")
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
# Wait for the live window to fill: the same number of segments twice,
# more than a segment's duration apart.
segments() { curl -sf "$1" | grep -c '^#EXTINF' || true; }
last=-1
for i in $(seq 1 40); do
  now=$(segments "$open_url")
  [ "$now" -gt 1 ] && [ "$now" = "$last" ] && [ "$(segments "$locked_url")" = "$now" ] && break
  last=$now
  sleep 3
done

# A wrk script that spreads requests over every token of the list.
for stream in open locked; do
  awk -v s="$stream" 'BEGIN { print "local paths = {" } { printf "  \"/%s/index.m3u8?token=%s\",\n", s, $0 } END {
    print "}\nlocal i = 0\nrequest = function()\n  i = i % #paths + 1\n  return wrk.format(nil, paths[i])\nend" }' \
    "$work/tokens" > "$work/$stream.lua"
done

# Requests/s of one wrk run; $1 is the stream, $2 one or many.
rps() {
  local url="http://127.0.0.1:$port/$1/index.m3u8?token=$token" script=()
  [ "$2" = many ] && script=(-s "$work/$1.lua")
  wrk -t2 -c"$conns" -d"${secs}s" "${script[@]}" "$url" | awk '/Requests\/sec/ {print $2}'
}
declare -A runs
for case in one many; do
  for round in $(seq 1 "$rounds"); do
    order="open locked"
    [ $((round % 2)) = 0 ] && order="locked open"
    for stream in $order; do
      runs[$case-$stream]+="$(rps "$stream" "$case") "
    done
  done
done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=

python3 - "$rounds" "$sessions" "${runs[one-open]}" "${runs[one-locked]}" "${runs[many-open]}" "${runs[many-locked]}" <<'PY'
import statistics, sys
rounds, sessions = sys.argv[1], int(sys.argv[2])
one_off, one_on, many_off, many_on = ([float(x) for x in a.split()] for a in sys.argv[3:7])
print(f"packager live playlist, requests/s (wrk; median and best of {rounds} alternating runs):")
print(f"  {'':<40} {'median':>8} {'best':>8}")
def row(name, runs, base=None):
    med, best = statistics.median(runs), max(runs)
    line = f"  {name:<40} {med:>8.0f} {best:>8.0f}"
    if base is not None:
        b = statistics.median(base)
        line += f"   ({(med - b) / b * 100:+.1f} % at the median, target within 5 %)"
    print(line)
row("auth off, one token", one_off)
row("securetoken, one session, cached allow", one_on, one_off)
row(f"auth off, {sessions} tokens", many_off)
row(f"securetoken, {sessions} sessions, cached", many_on, many_off)
PY

cd "$repo"
cargo bench -q -p dvr-auth --bench decisions
