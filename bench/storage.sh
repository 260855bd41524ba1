#!/usr/bin/env bash
# `make bench`, archive part: requests per stream-hour against S3 and the
# upload throughput of a 1 GB chunk beside boto3, on s3s-fs on loopback.
# What is measured and why: bench/README.md and bench/storage.py.
#
# Environment:
#   CARGO_TARGET_DIR  where the release examples are built
#                     (default $HOME/.cache/dvr/target)
#   DVR_BENCH_CACHE   where the input and scratch files live
#                     (default $HOME/.cache/dvr/bench)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/dvr/target}
cache=${DVR_BENCH_CACHE:-$HOME/.cache/dvr/bench}
s3s_fs=${S3S_FS_BIN:-$HOME/.cache/dvr/tools/bin/s3s-fs}

[ -x "$s3s_fs" ] || { echo "s3s-fs is missing: run 'make test-deps'" >&2; exit 1; }
if ! python3 -c "import boto3" 2>/dev/null; then
  echo "installing boto3 (the upload peer) from Debian" >&2
  apt-get update -qq && apt-get install -y -qq python3-boto3 >/dev/null
fi

(cd "$here/.." && cargo build --release --locked -q -p dvr-recorder --example archive_hour \
  && cargo build --release --locked -q -p dvr-storage --example put_file)

input=$("$here/input.sh")
exec python3 "$here/storage.py" --s3s-fs "$s3s_fs" \
  --archive-hour "$CARGO_TARGET_DIR/release/examples/archive_hour" \
  --put-file "$CARGO_TARGET_DIR/release/examples/put_file" \
  --input "$input" --scratch "$cache/storage"
