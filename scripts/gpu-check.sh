#!/usr/bin/env bash
# The one command for a GPU session: checks and measures the CUDA path on this machine's GPU and
# writes docs/gpu-results/<date>-<device>.md. About 10 minutes; fails if no CUDA device is visible.
#
#   1. installs nvcc 13.0 into .tools/cuda if needed (scripts/install-cuda-toolchain.sh);
#   2. builds with --features cuda (kernels compiled to PTX for sm_80/sm_90, or SPEX_CUDA_ARCHS);
#   3. runs the GPU tests (tests/gpu.rs, every kernel against its CPU twin) with --ignored;
#   4. runs the throughput benchmark (benches/gpu.rs): kernel timings and, with candle's CUDA
#      backend (SPEX_GPU_MODELS=1 adds --features candle-cuda), masked queries/s of the default
#      model's shape and a random-weight 1B Llama at several batch sizes and prompt lengths;
#   5. runs the same masked batches through PyTorch / HF transformers (scripts/gpu_peer.py) as
#      the side-by-side peer, when torch and transformers import.
# Figures land in the results file only from this script: docs never carry guessed GPU numbers.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu-check: no CUDA device visible (nvidia-smi -L fails); this script needs a GPU" >&2
    exit 1
fi
device=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)
slug=$(echo "$device" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-//; s/-$//')
out="docs/gpu-results/$(date -u +%Y-%m-%d)-$slug.md"
mkdir -p docs/gpu-results
log=$(mktemp)
trap 'rm -f "$log"' EXIT

export NVCC="${NVCC:-$(bash scripts/install-cuda-toolchain.sh | tail -n 1)/bin/nvcc}"
features=cuda
if [[ "${SPEX_GPU_MODELS:-0}" == 1 ]]; then
    features=cuda,candle-cuda
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
fi

step() { echo "== $* ($(($(date +%s) - start)) s)" | tee -a "$log" >&2; }

step "build --features $features"
cargo build --release --features "$features" --all-targets 2>&1 | tail -n 5

step "GPU tests"
tests_status=passed
if ! cargo test --release --features "$features" --test gpu -- --include-ignored 2>&1 | tee -a "$log"; then
    tests_status=FAILED
fi

step "spex benchmark"
bench=$(timeout 300 cargo bench --features "$features" --bench gpu 2>&1 | tee /dev/stderr | grep '^|' || true)

step "PyTorch / transformers peer"
peer="| (not run: torch or transformers missing) | | | | | | |"
peer_versions=""
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
    peer_out=$(timeout 240 python3 scripts/gpu_peer.py --dtype fp16 --seconds 2 2>&1 | tee /dev/stderr || true)
    peer=$(echo "$peer_out" | grep '^|' || echo "| (peer produced no rows) | | | | | | |")
    peer_versions=$(echo "$peer_out" | grep '^<!--' || true)
fi

{
    echo "# GPU check: $device, $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "Written by \`scripts/gpu-check.sh\` at commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)."
    echo "Driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1). Features: \`$features\`."
    echo
    echo "GPU tests (tests/gpu.rs, --ignored): **$tests_status**."
    echo
    echo "## spex"
    echo
    echo "| path | model | batch | prompt tokens | masked queries/s | tokens/s | ms/query |"
    echo "|---|---|---|---|---|---|---|"
    echo "${bench:-| (benchmark produced no rows) | | | | | | |}"
    echo
    echo "## PyTorch / transformers (fp16, same shapes, random weights)"
    echo
    echo "$peer_versions"
    echo
    echo "| path | model | batch | prompt tokens | masked queries/s | tokens/s | ms/query |"
    echo "|---|---|---|---|---|---|---|"
    echo "$peer"
    echo
    echo "Total time: $(($(date +%s) - start)) s."
} > "$out"
echo "gpu-check: wrote $out" >&2
[[ "$tests_status" == passed ]]
