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
[ -x /usr/bin/time ] || need_apt+=(time)

if [ ${#need_apt[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing with apt-get: ${need_apt[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
fi

command -v cargo >/dev/null 2>&1 || { echo "cargo is required: install Rust with rustup" >&2; exit 1; }
rustup component list --installed 2>/dev/null | grep -q clippy || rustup component add clippy rustfmt
