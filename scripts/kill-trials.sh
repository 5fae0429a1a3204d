#!/usr/bin/env bash
# Many kill -9 trials of the crash-safety test (each kills a run at random points until a resume
# finishes, then checks the store and result against an uninterrupted run).
# Usage: scripts/kill-trials.sh [TRIALS]   (default 200; the always-on test runs 12)
set -euo pipefail
cd "$(dirname "$0")/.."
SPEX_KILL_TRIALS="${1:-200}" cargo test --release --test reliability kill_9 -- --nocapture
