#!/usr/bin/env bash
# Builds the GPU test and benchmark binaries on a machine with Rust and network (no GPU needed)
# into .gpu-bundle/, for a GPU machine without a Rust toolchain or network: carry .gpu-bundle
# there and run scripts/gpu-check.sh, which uses the bundle when cargo is missing.
#
#   .gpu-bundle/gpu-tests.xz, gpu-bench.xz                 feature cuda (libcuda loaded at run time)
#   .gpu-bundle/gpu-tests-models.xz, gpu-bench-models.xz,  feature candle-cuda (SPEX_BUNDLE_MODELS=1)
#   spex-models.xz                                         (the CLI, for `spex bench throughput`)
#
# candle-cuda links the CUDA libraries at build time. Without a toolkit they come from PyPI
# (cuBLAS, cuRAND, NVRTC wheels of CUDA 13.0, ~590 MB, into SPEX_CUDA_LIBS_DIR, default
# .tools/cuda-libs) and a stub
# libcuda.so generated from the driver API cudarc binds (soname libcuda.so.1: the GPU machine's
# real driver is what loads at run time). Binaries are stripped (the bundle must stay small).
set -euo pipefail
cd "$(dirname "$0")/.."
cu13=$(bash scripts/install-cuda-toolchain.sh | tail -n 1)
export NVCC="$cu13/bin/nvcc"
out=.gpu-bundle
rm -rf "$out"
mkdir -p "$out"

# Path of the executable cargo built for target `$2` (test or bench) with features `$1`.
built() {
    cargo test --release --features "$1" --no-run --message-format=json "${@:3}" 2>/dev/null |
        python3 -c 'import json,sys
for l in sys.stdin:
    m = json.loads(l)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$2" | tail -n 1
}

cargo test --release --features cuda --no-run --test gpu --bench gpu
cp "$(built cuda gpu --test gpu)" "$out/gpu-tests"
cp "$(built cuda gpu --bench gpu)" "$out/gpu-bench"

if [[ "${SPEX_BUNDLE_MODELS:-0}" == 1 ]]; then
    libs=${SPEX_CUDA_LIBS_DIR:-.tools/cuda-libs}
    if [[ ! -d "$libs/link" ]]; then
        mkdir -p "$libs/whl" "$libs/link"
        python3 -m pip download --quiet --no-deps --only-binary=:all: -d "$libs/whl" \
            nvidia-cublas==13.0.2.14 nvidia-curand==10.4.5.25 nvidia-cuda-nvrtc==13.0.88
        for w in "$libs"/whl/*.whl; do python3 -m zipfile -e "$w" "$libs"; done
        # The stub: every cu* function cudarc declares, returning CUDA_ERROR_NO_DEVICE (100), so
        # a binary run against it on a machine without a GPU sees no device.
        src=$(find ~/.cargo/registry/src -path '*cudarc-0.19.*/src/driver/sys/mod.rs' | sort | tail -n 1)
        grep -ohE 'fn (cu[A-Za-z0-9_]+)\(' "$src" | sed -E 's/fn (cu[A-Za-z0-9_]+)\(/\1/' | sort -u |
            awk '{print "int " $1 "(void) { return 100; }"}' > "$libs/stub.c"
        cc -shared -fPIC -o "$libs/link/libcuda.so" -Wl,-soname,libcuda.so.1 "$libs/stub.c"
        for l in cublas cublasLt curand nvrtc; do
            ln -sf "$(realpath "$(ls "$libs"/nvidia/cu13/lib/lib$l.so.* | grep -v alt | head -n 1)")" "$libs/link/lib$l.so"
        done
        ln -sf "$cu13/lib/libcudart.so.13" "$libs/link/libcudart.so"
    fi
    export CUDARC_CUDA_VERSION=13000 CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}" PATH="$cu13/bin:$PATH"
    export RUSTFLAGS="-L native=$(realpath "$libs")/link"
    export CARGO_TARGET_DIR="${SPEX_CANDLE_TARGET_DIR:-$PWD/target/candle-cuda}"
    cargo test --release --features candle-cuda --no-run --test gpu --bench gpu
    cp "$(built candle-cuda gpu --test gpu)" "$out/gpu-tests-models"
    cp "$(built candle-cuda gpu --bench gpu)" "$out/gpu-bench-models"
    cargo build --release --features candle-cuda --bin spex
    cp "$CARGO_TARGET_DIR/release/spex" "$out/spex-models"
fi
# The commit the binaries were built from (the GPU machine's copy of the tree may have no git).
echo "$(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo -dirty)" > "$out/commit"
# Stripped and xz-compressed: a candle-cuda binary is ~57 MB stripped (candle's kernels), ~7 MB
# compressed, and what a session carries is limited.
bins=("$out"/gpu-*)
[[ ! -e "$out/spex-models" ]] || bins+=("$out/spex-models")
strip "${bins[@]}"
xz -T0 -6 -f "${bins[@]}"
ls -la "$out" >&2
echo "gpu-bundle: carry .gpu-bundle to the GPU machine and run scripts/gpu-check.sh there" >&2
