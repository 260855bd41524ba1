#!/usr/bin/env bash
# `make bench`: the packager's HTTP answers against nginx, measured with wrk
# on loopback in one run: a 24-hour archive playlist's p99 latency, a 1-hour
# playlist's requests/s, 1 MiB segments from the memory cache, memory
# per 1,000 concurrent timeshift_abs-T.ts viewers, and playback's p99 with
# and without 100 connections asking for JPEG previews.
# nginx runs here as an unprivileged process on a loopback port with a
# temporary config, and is stopped on exit. What is measured and why:
# bench/README.md.
#
# Environment:
#   DVR_BENCH_SECS  seconds per wrk row (default 5)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)

# Bench dependencies (not test dependencies): wrk and nginx from Debian.
missing=()
command -v wrk >/dev/null || missing+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]} (bench dependencies)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx || echo /usr/sbin/nginx)

# shellcheck source=bench/lib.sh
. "$here/lib.sh"

# 1,000 viewers are 1,000 sockets on each side.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

nginx_port=$(free_port)
mkdir -p "$work/www" "$work/tmp"
chmod 755 "$work" "$work/www"
# The peer as a static-file server is usually configured: sendfile,
# keep-alive, no access log, one worker per core of this machine.
cat >"$work/nginx.conf" <<CONF
daemon off;
worker_processes auto;
pid $work/nginx.pid;
error_log $work/nginx.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  client_body_temp_path $work/tmp;
  proxy_temp_path $work/tmp;
  fastcgi_temp_path $work/tmp;
  uwsgi_temp_path $work/tmp;
  scgi_temp_path $work/tmp;
  types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
  server {
    listen 127.0.0.1:$nginx_port;
    root $work/www;
  }
}
CONF
"$nginx_bin" -c "$work/nginx.conf" -p "$work" >"$work/nginx-stdout.log" 2>&1 &
pids+=($!)
wait_port "$nginx_port"

export DVR_BENCH_NGINX="127.0.0.1:$nginx_port" DVR_BENCH_NGINX_ROOT="$work/www" \
  DVR_BENCH_WRK="$(command -v wrk)"
cd "$repo"
# The JPEG previews' decoder, found beside the bench's directory.
cargo build --release --locked -q -p dvr-preview-decoder
cargo bench --locked -q -p dvr --bench packager_http
