#!/usr/bin/env bash
# `make bench`: time to first byte of an archived segment through the
# packager, from a cold cache (a ranged GET to S3), a warm memory cache and a
# warm disk cache, beside nginx serving the same segment from a file.
# s3s-fs and nginx are started here on loopback ports and stopped on exit.
# What is measured and why: bench/README.md.
#
# Environment:
#   S3S_FS_BIN   the s3s-fs binary (default: ~/.cache/dvr/tools/bin/s3s-fs,
#                built by scripts/install-storage-test-deps.sh)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
s3s=${S3S_FS_BIN:-$HOME/.cache/dvr/tools/bin/s3s-fs}

# Dependencies: nginx from Debian (one apt-get update first), s3s-fs built once.
if ! command -v nginx >/dev/null && [ ! -x /usr/sbin/nginx ]; then
  echo "installing nginx (the peer)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)
[ -x "$s3s" ] || "$repo/scripts/install-storage-test-deps.sh"

# shellcheck source=bench/lib.sh
. "$here/lib.sh"

s3_port=$(free_port)
nginx_port=$(free_port)
mkdir -p "$work/s3/bench" "$work/www"
# nginx's workers run as an unprivileged user: let them read the files.
chmod 755 "$work" "$work/www"

"$s3s" --host 127.0.0.1 --port "$s3_port" --access-key bench-access --secret-key bench-secret-0123456789 \
  "$work/s3" >"$work/s3s-fs.log" 2>&1 &
pids+=($!)

cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx.log;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nodelay on;
  default_type video/mp2t;
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
  }
}
CONF
"$nginx_bin" -c "$work/nginx.conf" -p "$work" >"$work/nginx-stdout.log" 2>&1 &
pids+=($!)

wait_port "$s3_port"
wait_port "$nginx_port"

export AWS_ENDPOINT_URL="http://127.0.0.1:$s3_port" AWS_REGION=us-east-1 \
  AWS_ACCESS_KEY_ID=bench-access AWS_SECRET_ACCESS_KEY=bench-secret-0123456789 \
  DVR_BENCH_NGINX="127.0.0.1:$nginx_port" DVR_BENCH_NGINX_ROOT="$work/www"
cd "$repo"
cargo bench --locked -q -p dvr-packager --bench segment_ttfb
