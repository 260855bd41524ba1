#!/usr/bin/env bash
# Refreshes the third-party scripts the player page serves (crates/web/assets/vendor/)
# from the versions pinned in crates/web/package-lock.json. The copied files are
# committed, so `cargo build` and `make run` never need node; run this only to
# change a version (edit package.json, `npm install` there, then this script).
set -euo pipefail
web="$(cd "$(dirname "$0")/../crates/web" && pwd)"
cd "$web"
npm ci --no-audit --no-fund --loglevel=error
mkdir -p assets/vendor
cp node_modules/hls.js/dist/hls.min.js assets/vendor/hls.min.js
cp node_modules/hls.js/LICENSE assets/vendor/hls.js.LICENSE
echo "hls.js $(node -p 'require("./node_modules/hls.js/package.json").version') copied into $web/assets/vendor/"
