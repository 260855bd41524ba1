#!/usr/bin/env bash
# Makes the benchmarks' input once per machine and prints its path: a
# 10-minute 1920x1080 25 fps H.264 + AAC transport stream at a constant
# 5 Mbps, the shape of a broadcast HD channel (see bench/README.md).
#
# It is CBR with filler (nal-hrd=cbr) so it really is ~5 Mbps whatever the
# encoder thinks of testsrc2's simple picture, and it is written beside and
# renamed, so an interrupted run never leaves a short file that looks done.
#
# Environment: DVR_BENCH_CACHE, where it is kept (default
# $HOME/.cache/dvr/bench).
set -euo pipefail

cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}
command -v ffmpeg >/dev/null || { echo "ffmpeg is missing: run 'make test-deps'" >&2; exit 1; }
mkdir -p "$cache"
input=$cache/testsrc2_1080p25_5M_600s.ts
if [ ! -s "$input" ]; then
  echo "making the 10-minute 1080p input once (cached in $cache); this takes a few minutes" >&2
  nice -n 10 ffmpeg -hide_banner -nostdin -v error -y \
    -f lavfi -i "testsrc2=size=1920x1080:rate=25:duration=600" \
    -f lavfi -i "sine=frequency=440:sample_rate=48000:duration=600" \
    -map 0:v -map 1:a \
    -c:v libx264 -preset ultrafast -pix_fmt yuv420p \
    -b:v 5M -maxrate 5M -bufsize 10M -g 50 -keyint_min 50 -sc_threshold 0 \
    -x264-params nal-hrd=cbr \
    -c:a aac -b:a 128k -ac 2 \
    -f mpegts "$input.partial" >&2
  mv "$input.partial" "$input"
fi
echo "$input"
