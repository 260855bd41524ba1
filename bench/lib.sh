# Shared by the benchmark scripts that start servers: a scratch directory
# and the processes started in it, removed and killed on exit; a free
# loopback port; waiting for a port to listen. Source it after `set -e`.

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() {
  for _ in $(seq 1 200); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on port $1; logs in $work" >&2
  cat "$work"/*.log >&2 || true
  exit 1
}
