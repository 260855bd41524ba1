#!/usr/bin/env bash
# `make bench`: an MP4 export of a 10-minute 5 Mbps range over HTTP, the
# server's CPU beside `ffmpeg -i …/archive-FROM-DUR.ts -c copy out.mp4` on
# the same range, the first byte warm and the server's RSS growth, in one
# run. What is measured and why: bench/README.md.
#
# Environment:
#   DVR_BENCH_CACHE  where the input (bench/input.sh) lives
#   DVR_BENCH_RUNS   repetitions per row; the median is reported (default 3)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
for tool in ffmpeg curl; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "GNU time (/usr/bin/time) is missing: apt-get install time" >&2; exit 1; }

DVR_BENCH_INPUT=$("$here/input.sh")
export DVR_BENCH_INPUT
cd "$repo"
cargo bench --locked -q -p dvr-packager --bench export_http
