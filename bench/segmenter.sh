#!/usr/bin/env bash
# `make bench`: the segmenter's CPU time and peak memory beside ffmpeg's HLS
# segmenter on the same 10-minute 1080p 5 Mbps H.264+AAC transport stream.
# What is measured and why: bench/README.md.
#
# Environment:
#   DVR_BIN          the dvr binary (default: $CARGO_TARGET_DIR/release/dvr,
#                    which `make bench` builds first)
#   DVR_BENCH_CACHE  where the input is made once and kept
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

mkdir -p "$cache"
input=$cache/testsrc2_1080p25_5M_600s.ts

# The input is expensive to make (minutes of x264 on 1080p) and only its shape
# matters, so it is made once per machine. It is CBR with filler (nal-hrd=cbr)
# so it really is ~5 Mbps, the size of a broadcast HD channel, whatever the
# encoder thinks of testsrc2's simple picture. Written beside and renamed, so an
# interrupted run never leaves a short file that looks finished.
if [ ! -s "$input" ]; then
  echo "making the 10-minute 1080p input once (cached in $cache); this takes a few minutes"
  nice -n 10 ffmpeg -hide_banner -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=25:duration=600" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=600" \
    -map 0:v -map 1:a \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
    -b:v 5M -maxrate 5M -bufsize 10M -g 50 -keyint_min 50 -sc_threshold 0 \
    -x264-params nal-hrd=cbr \
    -c:a aac -b:a 128k -ac 2 \
    -f mpegts "$input.partial"
  mv "$input.partial" "$input"
fi

exec python3 "$here/measure.py" --dvr "$dvr" --input "$input" --runs "$runs" --scratch "$cache/out"
