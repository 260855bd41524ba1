#!/usr/bin/env bash
# Runs fuzz targets for a bounded time each: `make fuzz` (fuzz/README.md).
#
#   fuzz/run.sh [TARGET...]     every target when none is named
#
# FUZZ_SECS (default 60) seconds per target. Stable Rust: RUSTC_BOOTSTRAP=1
# lets it take the nightly flags cargo-fuzz passes (-Zsanitizer=address,
# the sancov passes), so no nightly toolchain is downloaded. cargo-fuzz is
# installed from crates.io, at a pinned version, if missing.
#
# Inputs a run finds land in $FUZZ_TARGET_DIR/corpus/<target>, outside the
# clone (the committed corpus/<target> is read, never written); crashes in
# artifacts/<target>/. Every target runs even if one fails; the exit status
# says whether any did.
set -euo pipefail
cd "$(dirname "$0")"

CARGO=${CARGO:-cargo}
CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECS=${FUZZ_SECS:-60}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-$HOME/.cache/dvr/target-fuzz}
export RUSTC_BOOTSTRAP=1 CARGO_INCREMENTAL=0

if ! "$CARGO" fuzz --version 2>/dev/null | grep -q " $CARGO_FUZZ_VERSION\$"; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
  "$CARGO" install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <("$CARGO" fuzz list)
fi

# One build for all targets: they share every dependency.
"$CARGO" fuzz build --target-dir "$FUZZ_TARGET_DIR"

failed=()
for target in "${targets[@]}"; do
  found="$FUZZ_TARGET_DIR/corpus/$target"
  mkdir -p "$found"
  seeds="corpus/$target"
  # The retimer reads transport-stream packets: the segmenter's corpus.
  [ "$target" = retime ] && seeds=corpus/segmenter
  echo "fuzz: $target for ${FUZZ_SECS}s (seeds $seeds, new inputs in $found)"
  if ! "$CARGO" fuzz run --target-dir "$FUZZ_TARGET_DIR" "$target" "$found" "$seeds" -- \
    -max_total_time="$FUZZ_SECS" -print_final_stats=1; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz: ${#targets[@]} targets ran ${FUZZ_SECS}s each without a failure"
