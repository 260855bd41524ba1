#!/usr/bin/env bash
# Installs what building the workspace needs beyond Rust, only when it is
# missing: dvr-preview-decoder (services/preview-decoder) links Debian's
# libavcodec, libavformat, libavutil and libswscale, whose headers bindgen
# reads with libclang; pkg-config finds them. `make build` and `make test`
# run it; the `dvr` binary alone (`cargo build -p dvr`, the image) needs
# none of it. With --list it only prints the missing packages (for
# install-test-deps.sh, so that apt-get update runs once).
set -euo pipefail

need_apt=()
for lib in libavcodec libavformat libavutil libswscale; do
  pkg-config --exists "$lib" 2>/dev/null || need_apt+=("$lib-dev")
done
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# bindgen loads libclang.so; Debian's libclang-dev provides it.
ls /usr/lib/llvm-*/lib/libclang.so >/dev/null 2>&1 || need_apt+=(libclang-dev)

if [ "${1:-}" = "--list" ]; then
  echo "${need_apt[@]}"
  exit 0
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing with apt-get (build dependencies): ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi
