#!/usr/bin/env bash
# Installs the servers the storage integration tests start (crates/storage/tests):
#   - s3s-fs 0.14.1 (an S3 server that checks SigV4), built once into
#     $HOME/.cache/dvr/tools/bin, where the test harness looks for it;
#   - a one-node OpenStack Swift from Debian's packages (proxy with tempauth
#     and s3api, account, container, object servers) and memcached.
# Idempotent: installs only what is missing; `apt-get update` runs once, and
# only when something has to be installed with apt.
set -euo pipefail

TOOLS="${DVR_TOOLS_DIR:-$HOME/.cache/dvr/tools}"
S3S_FS_VERSION=0.14.1

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"

need_apt=()
for bin in swift-proxy-server:swift-proxy swift-account-server:swift-account \
           swift-container-server:swift-container swift-object-server:swift-object \
           swift-ring-builder:swift memcached:memcached; do
  cmd="${bin%%:*}"
  pkg="${bin##*:}"
  command -v "$cmd" >/dev/null 2>&1 || need_apt+=("$pkg")
done

if [ ${#need_apt[@]} -gt 0 ]; then
  echo "installing with apt-get: ${need_apt[*]}"
  $sudo apt-get update -qq
  # Debian's packages try to start their services; in a container without
  # an init system that fails harmlessly. The tests start their own servers.
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${need_apt[@]}" >/dev/null
fi

if ! "$TOOLS/bin/s3s-fs" --version 2>/dev/null | grep -q "$S3S_FS_VERSION"; then
  echo "building s3s-fs $S3S_FS_VERSION into $TOOLS (a few minutes, once)"
  # Its own target dir, so it does not invalidate the workspace build cache.
  CARGO_TARGET_DIR="$HOME/.cache/dvr/target-s3s-fs" nice -n 10 \
    cargo install --locked s3s-fs --version "$S3S_FS_VERSION" --features binary --root "$TOOLS"
fi

echo "storage test servers ready: $TOOLS/bin/s3s-fs, $(command -v swift-proxy-server), $(command -v memcached)"
