#!/usr/bin/env bash
# Renders report.html of the quick-start run (the default model on the built-in example) in
# headless Chromium (Debian's `chromium` package) and saves a screenshot to docs/report-demo.png;
# fails if the browser cannot render the page.
# Usage: scripts/report-screenshot.sh [RUN_DIR]   (default: a fresh quick-start run)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "needs Debian's chromium: apt-get install chromium" >&2; exit 1; }
dir="${1:-}"
if [ -z "$dir" ]; then
    dir="$(mktemp -d)/run"
    cargo run --release --quiet -- explain --quiet --out "$dir" >/dev/null
fi
profile="$(mktemp -d)"
chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$profile" --window-size=1100,1400 \
    --screenshot="$PWD/docs/report-demo.png" "file://$(realpath "$dir")/report.html" 2>/dev/null
test -s docs/report-demo.png
echo "wrote docs/report-demo.png from $dir/report.html"
