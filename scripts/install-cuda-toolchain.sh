#!/usr/bin/env bash
# Installs nvcc 13.0 (with ptxas, the CUDA headers and CCCL) from PyPI wheels into .tools/cuda,
# no GPU needed: enough to compile kernels/*.cu to PTX and ptxas-check them. Pinned to 13.0 because
# the GPU machines run driver 580 (CUDA 13.0), which cannot load PTX from a newer nvcc.
# Idempotent; prints the directory to put in NVCC (bin/nvcc) / CUDA_ROOT.
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${SPEX_CUDA_DIR:-$PWD/.tools/cuda}"
if [ -x "$dest/nvidia/cu13/bin/nvcc" ]; then
    echo "$dest/nvidia/cu13"
    exit 0
fi
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
    nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85 >&2
mkdir -p "$dest"
for w in "$wheels"/*.whl; do
    python3 -m zipfile -e "$w" "$dest" >&2
done
chmod +x "$dest"/nvidia/cu13/bin/* "$dest"/nvidia/cu13/nvvm/bin/* 2>/dev/null || true
"$dest/nvidia/cu13/bin/nvcc" --version >&2
echo "$dest/nvidia/cu13"
