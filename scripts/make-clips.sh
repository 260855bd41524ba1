#!/usr/bin/env bash
# Makes the MPEG-TS test clips committed under testdata/ (see testdata/README.md
# for what each one is for and what the tests expect of it).
#
#   scripts/make-clips.sh OUTDIR
#
# The clips are generated from lavfi sources only (testsrc2, sine, aevalsrc),
# so they carry no third-party content and can be remade anywhere (python3
# reorders the packets of one clip; see interleaved.ts). The output is
# byte-identical from run to run with the same ffmpeg/x264/x265 build: bitexact
# flags keep version strings out of the streams, encoders run single-threaded
# (threads split frames differently run to run) and the sources are synthetic.
# A different ffmpeg build may produce different bytes; the tests compare the
# segmenter with what ffprobe says about the clip, never with fixed hashes, so
# a regenerated set still passes.
#
# Budget: all clips together stay under 3 MB. They are short (6-10 s) and low
# bitrate; the GOP is 1 s so a 2 s target duration gives several segments.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
out=$1
mkdir -p "$out"
for tool in ffmpeg python3; do
  command -v "$tool" >/dev/null || { echo "$tool is missing: run 'make test-deps'" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Seconds of the 33-bit PTS range: 2^33 / 90000.
readonly PTS_WRAP_SECONDS=95443.717678

# Flags every invocation shares: no banner, errors only, overwrite, and no
# encoder/muxer version strings in the output.
common=(-hide_banner -nostdin -v error -y -fflags +bitexact)

# H.264 High, single-threaded (x264's threads make output non-deterministic),
# a fixed 1 s GOP at 25 fps without scene-cut keyframes, so segments are cut
# at predictable places. Args: bitrate.
x264() {
  echo -c:v libx264 -profile:v high -preset veryfast -threads 1 \
    -b:v "$1" -maxrate "$1" -bufsize "$1" -g 25 -keyint_min 25 -sc_threshold 0 \
    -pix_fmt yuv420p -flags:v +bitexact
}

# AAC-LC. Args: bitrate.
aac() {
  echo -c:a aac -b:a "$1" -flags:a +bitexact
}

# A test picture: testsrc2 at WxH, 25 fps. Args: size, duration.
picture() {
  echo -f lavfi -i "testsrc2=size=$1:rate=25:duration=$2"
}

# A stereo sine tone at 48 kHz. Args: left frequency, duration, [sample rate].
tone() {
  local rate=${3:-48000}
  echo -f lavfi -i "sine=frequency=$1:sample_rate=$rate:duration=$2"
}

# Stereo from mono: both inputs' tone on both channels, so the AAC encoder sees
# two channels (sine alone is mono).
stereo=(-ac 2)

say() { printf '  %-22s %s\n' "$1" "$2"; }

echo "making clips in $out"

# 1. The reference clip: H.264 High 720p25 + AAC-LC stereo 48 kHz, 10 s.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 1280x720 10) $(tone 440 10) \
  -map 0:v -map 1:a $(x264 250k) $(aac 64k) "${stereo[@]}" \
  -metadata:s:a:0 language=eng \
  -f mpegts "$out/h264_aac_720p.ts"
say h264_aac_720p.ts "H.264 High 1280x720 25 fps + AAC-LC stereo 48 kHz, 10 s"

# 2. H.265 Main + AAC. x265 runs without its thread pool for determinism and
# without its version SEI (info=0). Its default open GOP starts GOPs with CRA
# pictures, not IDR: the segmenter must treat CRA as a random-access point.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 8) $(tone 330 8) \
  -map 0:v -map 1:a \
  -c:v libx265 -preset veryfast -b:v 100k -pix_fmt yuv420p -tag:v hvc1 \
  -x265-params "pools=none:frame-threads=1:keyint=25:min-keyint=25:scenecut=0:info=0:log-level=error" \
  -flags:v +bitexact \
  $(aac 64k) "${stereo[@]}" \
  -f mpegts "$out/h265_aac.ts"
say h265_aac.ts "H.265 Main 640x360 25 fps (open GOP, CRA) + AAC-LC stereo, 8 s"

# 3. Audio only: the segmenter has no keyframes to cut at and must cut on audio
# frame (PES) boundaries.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(tone 523 10) \
  $(aac 64k) "${stereo[@]}" \
  -f mpegts "$out/aac_only.ts"
say aac_only.ts "AAC-LC stereo 48 kHz only, 10 s"

# 4. Two audio tracks with ISO 639 languages in the PMT.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 8) $(tone 440 8) $(tone 660 8) \
  -map 0:v -map 1:a -map 2:a $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -metadata:s:a:0 language=eng -metadata:s:a:1 language=deu \
  -f mpegts "$out/two_audio_langs.ts"
say two_audio_langs.ts "H.264 640x360 + AAC eng + AAC deu, 8 s"

# 4b. Two renditions of one picture (multi-bitrate): 640x360 at 120 kb/s and
# 320x180 at 40 kb/s from one split source with the same fixed GOP, so both
# have keyframes at the same instants, and one AAC track. The packager serves
# it as a master playlist with two variants.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 6) $(tone 440 6) \
  -filter_complex "[0:v]split=2[hi][lo0];[lo0]scale=320:180[lo]" \
  -map "[hi]" -map "[lo]" -map 1:a $(x264 120k) \
  -b:v:1 40k -maxrate:v:1 40k -bufsize:v:1 40k \
  $(aac 48k) "${stereo[@]}" -metadata:s:a:0 language=eng \
  -f mpegts "$out/two_renditions.ts"
say two_renditions.ts "H.264 640x360 + H.264 320x180 (same GOP) + AAC eng, 6 s"

# 4c. Two renditions whose keyframes do NOT align: the first keeps the 1 s
# GOP (the segmenter cuts at it), the second has a 1.2 s GOP, so most
# segments start in the middle of the second rendition's GOP. fMP4 output
# must say so (no stream access point at the segment start) rather than
# pretend. Video only, low rates: it exists for its keyframe layout.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 320x180 6) \
  -filter_complex "[0:v]split=2[hi][lo0];[lo0]scale=160:90[lo]" \
  -map "[hi]" -map "[lo]" $(x264 60k) \
  -b:v:1 20k -maxrate:v:1 20k -bufsize:v:1 20k -g:v:1 30 -keyint_min:v:1 30 \
  -f mpegts "$out/unaligned_renditions.ts"
say unaligned_renditions.ts "H.264 320x180 (1 s GOP) + H.264 160x90 (1.2 s GOP), 6 s"

# 5. PTS wrap. The mpegts muxer adds 1.4 s of mux delay to every timestamp, so
# an offset of (2^33 / 90 kHz) - 1.4 s - 5.5 s puts the wrap 5.5 s into the clip,
# mid-way through a GOP and a segment (1 s GOPs start at whole seconds). The muxer
# writes timestamps modulo 2^33, so the stream really wraps.
wrap_offset=$(awk -v w="$PTS_WRAP_SECONDS" 'BEGIN { printf "%.3f", w - 1.4 - 5.5 }')
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 10) $(tone 440 10) \
  -map 0:v -map 1:a $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -output_ts_offset "$wrap_offset" \
  -f mpegts "$out/pts_wrap.ts"
say pts_wrap.ts "H.264 640x360 + AAC, 10 s; PTS wraps past 2^33 at 5.5 s"

# 6. PTS jump. Two 5 s halves encoded separately (each starts with an IDR), the
# second with timestamps 300 s later, joined by the concat protocol and remuxed
# with -copyts so the jump survives but continuity counters and tables run on
# as from one encoder: a forward timestamp jump and nothing else. -muxdelay 0
# keeps the remux from adding a second 1.4 s delay.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 5) $(tone 440 5) \
  -map 0:v -map 1:a $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -f mpegts "$work/jump_a.ts"
# shellcheck disable=SC2046
ffmpeg "${common[@]}" -f lavfi -i "testsrc2=size=640x360:rate=25:duration=5,hue=h=90" $(tone 880 5) \
  -map 0:v -map 1:a $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -output_ts_offset 305 \
  -f mpegts "$work/jump_b.ts"
ffmpeg "${common[@]}" -copyts -i "concat:$work/jump_a.ts|$work/jump_b.ts" \
  -map 0 -c copy -muxdelay 0 -muxpreload 0 \
  -f mpegts "$out/pts_jump.ts"
say pts_jump.ts "H.264 640x360 + AAC, 10 s of content; PTS jumps +300 s at 5 s"

# 7. Two programs with different content, different sizes and sample rates, so
# a test can tell which program the segmenter picked. Program numbers are 10
# and 20 (not 1 and 2) so a number is never mistaken for an index.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" \
  $(picture 640x360 8) $(tone 440 8) \
  -f lavfi -i "testsrc2=size=320x240:rate=25:duration=8,negate" $(tone 880 8 44100) \
  -map 0:v -map 1:a -map 2:v -map 3:a \
  $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -metadata:s:a:0 language=eng -metadata:s:a:1 language=fra \
  -program program_num=10:title=A:st=0:st=1 \
  -program program_num=20:title=B:st=2:st=3 \
  -f mpegts "$out/multi_program.ts"
say multi_program.ts "program 10: H.264 640x360 + AAC 48 kHz; program 20: H.264 320x240 + AAC 44.1 kHz, 8 s"

# 8. Codec coverage: AC-3 5.1 and MPEG-1 Layer II beside H.264. system_b makes
# the muxer signal AC-3 the DVB way (stream type 0x06 + AC-3 descriptor), as
# European broadcasts do, instead of ATSC's 0x81.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 320x240 6) \
  -f lavfi -i "aevalsrc=sin(2*PI*220*t)|sin(2*PI*330*t)|sin(2*PI*440*t)|sin(2*PI*55*t)|sin(2*PI*550*t)|sin(2*PI*660*t):channel_layout=5.1:sample_rate=48000:duration=6" \
  $(tone 440 6) \
  -map 0:v -map 1:a -map 2:a $(x264 100k) \
  -c:a:0 ac3 -b:a:0 192k -c:a:1 mp2 -b:a:1 64k -ac:a:1 1 -flags:a +bitexact \
  -metadata:s:a:0 language=eng -metadata:s:a:1 language=spa \
  -mpegts_flags system_b \
  -f mpegts "$out/h264_ac3_mp2.ts"
say h264_ac3_mp2.ts "H.264 320x240 + AC-3 5.1 48 kHz (DVB signalling) + MP2 mono 48 kHz, 6 s"

# 9. Broadcast-style interleaving. ffmpeg's muxer writes each PES in one burst,
# so a cut at a video keyframe never splits an audio PES. Broadcast
# multiplexers spread every PES over time, packet by packet; then an audio PES
# is open when the keyframe's PES starts, and a segment cut there ends with an
# incomplete audio PES and the next begins with its tail. ffmpeg cannot mux
# that way, so the packets of one ffmpeg clip are reordered: each PID keeps its
# own packet order (and continuity counters), the audio packets are spread
# evenly between the others. Timestamps and payloads are untouched.
# shellcheck disable=SC2046
ffmpeg "${common[@]}" $(picture 640x360 8) $(tone 440 8) \
  -map 0:v -map 1:a $(x264 100k) $(aac 48k) "${stereo[@]}" \
  -f mpegts "$work/bursty.ts"
python3 - "$work/bursty.ts" "$out/interleaved.ts" <<'PY'
import sys

AUDIO_PID = 0x101
data = open(sys.argv[1], "rb").read()
packets = [data[i:i + 188] for i in range(0, len(data), 188)]
pid = lambda p: (p[1] & 0x1F) << 8 | p[2]
audio = [p for p in packets if pid(p) == AUDIO_PID]
rest = [p for p in packets if pid(p) != AUDIO_PID]
out, next_audio = [], 0
for i, packet in enumerate(rest):
    out.append(packet)
    # Audio packet j goes after the rest's packet j * len(rest) / len(audio).
    while next_audio < len(audio) and next_audio * len(rest) // len(audio) <= i:
        out.append(audio[next_audio])
        next_audio += 1
out.extend(audio[next_audio:])
open(sys.argv[2], "wb").write(b"".join(out))
PY
say interleaved.ts "H.264 640x360 + AAC, 8 s; audio packets interleaved with video, PES straddle keyframes"

total=$(du -cb "$out"/*.ts | tail -1 | cut -f1)
echo "total $total bytes"
if [ "$total" -ge 3000000 ]; then
  echo "clips exceed the 3 MB budget ($total bytes)" >&2
  exit 1
fi
