#!/usr/bin/env bash
# The one command for a GPU session: checks and measures the CUDA path on this machine's GPU and
# writes docs/gpu-results/<date>-<device>.md. Fails if no CUDA device is visible.
#
# Time: the steps share one budget, SPEX_GPU_CHECK_SECONDS (default 540: inside a 10-minute
# device call), each under a timeout that the budget caps, and the results file is rewritten
# after every step, so a step cut short still leaves the figures of the steps before it. Where
# OUT is set (the device tool's folder of files that come back), the results file and the whole
# log (gpu-check.log) are copied there after every step too.
#
#   1. uses NVCC, the machine's nvcc, or installs nvcc 13.0 (scripts/install-cuda-toolchain.sh);
#   2. builds with --features cuda (kernels compiled to PTX for sm_80/sm_90, or SPEX_CUDA_ARCHS);
#   3. runs the GPU tests (tests/gpu.rs, every kernel against its CPU twin) with --include-ignored;
#   4. runs the throughput benchmark (benches/gpu.rs): kernel timings and, with candle's CUDA
#      backend (--features candle-cuda, linked against the driver and PyTorch's CUDA libraries;
#      SPEX_GPU_MODELS=0 skips it), masked queries/s of random-weight Llamas shaped like the
#      default model and Llama 3.2 1B at several batch sizes and prompt lengths;
#   5. with candle-cuda, runs `spex bench throughput --device cuda` on random weights of both
#      shapes: whole runs through the engine (pipeline, durable store, ProxySPEX decoding);
#   6. runs the same masked batches through PyTorch / HF transformers (scripts/gpu_peer.py) as
#      the side-by-side peer, when torch and transformers import;
#   7. with the time left, the same whole runs on a random-weight BERT-base (the encoder path),
#      and on the 1B shape behind a 32-token template, run once (the prefix cache) and per row.
# Where cargo is missing (the GPU machines have no Rust toolchain and no network), steps 1-5 use
# the binaries scripts/gpu-bundle.sh built elsewhere, carried in .gpu-bundle/.
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
benchlog=$(mktemp)
trap 'rm -f "$log" "$benchlog"' EXIT
budget=${SPEX_GPU_CHECK_SECONDS:-540}
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
features="(none built yet)" models_note="" tests_status="not run" bench="" engine="" peer="" peer_versions=""

step() { echo "== $* ($(($(date +%s) - start)) s)" | tee -a "$log" >&2; }

# Seconds a step may take: at most $1, and never past the budget less 20 s for the write-up.
limit() {
    local left=$((budget - ($(date +%s) - start) - 20))
    ((left < $1)) || left=$1
    ((left > 5)) || left=5
    echo "$left"
}

# Runs "$@" under `timeout $1`, its output (stdout and stderr) to stdout and the log; notes a
# cut by the budget.
bounded() {
    local secs=$1 rc=0
    shift
    timeout "$secs" "$@" 2>&1 | tee -a "$log" || rc=$?
    ((rc != 124)) || echo "gpu-check: cut short after $secs s by the time budget" | tee -a "$log" >&2
    return "$rc"
}

# The GPU tests: "$@" is the test binary or cargo command.
run_tests() {
    step "GPU tests"
    tests_status=FAILED
    if bounded "$(limit 180)" "$@" >&2; then tests_status=passed; fi
    write_results
}

# The benchmark: "$@" is the bench binary or cargo command; its table rows become $bench.
run_bench() {
    step "spex benchmark"
    bounded "$(limit 300)" "$@" | tee "$benchlog" >&2 || true
    bench=$(grep '^|' "$benchlog" || true)
    write_results
}

# Whole runs through the engine on the shapes $1 (space-separated), with the arguments in
# engine_extra: the rest is the spex binary or cargo command, remembered in engine_cmd for later
# runs; the tables join $engine.
engine_cmd=() engine_extra=()
run_engine() {
    local shapes=$1 shape extra="${engine_extra[*]:+ ${engine_extra[*]}}"
    shift
    engine_cmd=("$@")
    step "spex bench throughput --device cuda$extra (whole runs: $shapes)"
    for shape in $shapes; do
        bounded "$(limit 60)" "$@" bench throughput --device cuda --shape "$shape" --lengths 32,128 \
            --batches 1024 --budget 4096 "${engine_extra[@]}" | tee "$benchlog" >&2 || true
        # The table, or where a time limit cut the run short, the rows measured before it.
        engine+="$shape$extra:"$'\n'"$(grep -E '^ +(tokens|[0-9])' "$benchlog" ||
            grep -E '^[0-9]+ tokens, batch [0-9]+: ' "$benchlog" || echo '(no rows)')"$'\n'
    done
    write_results
}

# Writes the results file from what the steps so far found (and copies it and the log to OUT).
write_results() {
    {
        echo "# GPU check: $device, $(date -u +%Y-%m-%dT%H:%MZ)"
        echo
        echo "Written by \`scripts/gpu-check.sh\` at commit $commit."
        echo "Driver: $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -n 1). Features: \`$features\` ($models_note)."
        echo
        echo "GPU tests (tests/gpu.rs, --include-ignored): **$tests_status**."
        echo
        echo "## spex"
        echo
        echo "GPU idle: share of device time between forwards (timing events on the compute stream)."
        echo "MFU: FLOPs of the forwards as run per second over the dense bf16 peak. Rows run compacted (hidden"
        echo "tokens dropped; FLOPs over the slots run) unless marked full-length (every position kept, as in transformers),"
        echo "and planned by length (rows of similar lengths share a pass) unless marked unplanned (masks in their order)."
        echo
        echo "| path | model | batch | prompt tokens | masked queries/s | tokens/s | ms/query | GPU idle | model TFLOP/s (MFU) |"
        echo "|---|---|---|---|---|---|---|---|---|"
        echo "${bench:-| (benchmark produced no rows) | | | | | | | | |}"
        echo
        echo "## spex bench throughput (whole runs: masks, pipeline, durable store, ProxySPEX decoding)"
        echo
        echo "Random weights of each shape, every prompt token a player, 4 096 design masks plus held-out ones,"
        echo "1 024 masks per stored batch; queries/s over the whole run. \`--template 32\`: 32 fixed tokens before"
        echo "the players, run once on the device (the prefix cache) or, with \`--no-prefix-cache\`, in every row."
        echo
        echo '```'
        echo "${engine:-(not run)}"
        echo '```'
        echo
        echo "## PyTorch / transformers (fp16, same shapes, random weights)"
        echo
        echo "$peer_versions"
        echo
        echo "| path | model | batch | prompt tokens | masked queries/s | tokens/s | ms/query |"
        echo "|---|---|---|---|---|---|---|"
        echo "${peer:-| (not run yet) | | | | | | |}"
        echo
        echo "Total time: $(($(date +%s) - start)) s of a $budget s budget."
    } > "$out"
    if [[ -n "${OUT:-}" ]]; then
        cp "$out" "$OUT/" && cp "$log" "$OUT/gpu-check.log"
    fi
}

# candle-cuda links libcuda, cuBLAS(Lt), cuRAND, NVRTC and cudart at build time. Where no CUDA
# toolkit is installed, borrow them from the driver (libcuda.so.1) and PyTorch's pip wheels
# (site-packages/nvidia/*/lib): unversioned links in one directory for the linker, the same
# directory on LD_LIBRARY_PATH at run time. Returns non-zero when a library is missing.
link_cuda_libs() {
    local dir=$1 lib found roots
    mkdir -p "$dir"
    roots=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
    found=$(ldconfig -p 2>/dev/null | awk '/libcuda\.so\.1 /{print $NF; exit}')
    [[ -n "$found" ]] || return 1
    ln -sf "$found" "$dir/libcuda.so"
    cuda_lib_path="$dir"
    for lib in cublas cublasLt curand nvrtc cudart; do
        found=$(find /usr/local/cuda*/lib64 $roots -path '*lib*' -name "lib$lib.so*" 2>/dev/null | sort | head -n 1)
        [[ -n "$found" ]] || { echo "gpu-check: lib$lib.so not found" >&2; return 1; }
        ln -sf "$found" "$dir/lib$lib.so"
        cuda_lib_path="$cuda_lib_path:$(dirname "$found")"
    done
}

# Without cargo (the GPU machines have no Rust toolchain and no network): the binaries that
# scripts/gpu-bundle.sh built elsewhere and the session carried in .gpu-bundle/.
# Unpacks .gpu-bundle/NAME.xz into $bin/NAME (python's lzma: no xz binary needed).
unpack() {
    [[ -f ".gpu-bundle/$1.xz" ]] || return 1
    python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' \
        ".gpu-bundle/$1.xz" "$bin/$1" && chmod +x "$bin/$1"
}

run_prebuilt() {
    bin=$(mktemp -d)
    unpack gpu-tests && unpack gpu-bench || {
        echo "gpu-check: no cargo here and no .gpu-bundle/: run scripts/gpu-bundle.sh where Rust is, and carry .gpu-bundle" >&2
        exit 1
    }
    local tests=$bin/gpu-tests bench_bin=$bin/gpu-bench
    features="cuda (prebuilt)"
    commit="$(cat .gpu-bundle/commit 2>/dev/null || echo unknown) (the bundle's)"
    models_note="model forwards not run: no candle-cuda binaries in the bundle"
    if unpack gpu-tests-models && unpack gpu-bench-models && link_cuda_libs "$bin/link"; then
        export LD_LIBRARY_PATH="$cuda_lib_path:${LD_LIBRARY_PATH:-}"
        tests=$bin/gpu-tests-models bench_bin=$bin/gpu-bench-models
        features="cuda,candle-cuda (prebuilt)"
        models_note="model forwards with candle-cuda"
    fi
    run_tests "$tests" --include-ignored
    run_bench "$bench_bin"
    if [[ "$features" == *candle-cuda* ]] && unpack spex-models; then
        run_engine "smollm2-135m llama-1b" "$bin/spex-models"
    fi
}

# With cargo: build here (candle-cuda too unless SPEX_GPU_MODELS=0, falling back to the kernels
# alone, feature cuda, when the libraries are missing or that build fails), test, bench.
run_with_cargo() {
    # nvcc: NVCC, the machine's own (the GPU machines have nvcc 13.0), or the PyPI toolchain.
    if [[ -z "${NVCC:-}" ]]; then
        NVCC=$(command -v nvcc || echo "$(bash scripts/install-cuda-toolchain.sh | tail -n 1)/bin/nvcc")
    fi
    export NVCC
    features=cuda
    models_note="model forwards not run (SPEX_GPU_MODELS=0)"
    if [[ "${SPEX_GPU_MODELS:-1}" == 1 ]]; then
        try_candle_cuda
    fi
    step "build --features $features ($models_note)"
    cargo build --release --features "$features" --all-targets 2>&1 | tail -n 5
    run_tests cargo test --release --features "$features" --test gpu -- --include-ignored
    # `cargo test --release` runs the harness-less bench with the release artifacts already
    # built (cargo bench would build a second set under the bench profile).
    run_bench cargo test --release --features "$features" --bench gpu
    if [[ "$features" == *candle-cuda* ]]; then
        run_engine "smollm2-135m llama-1b" cargo run --release --quiet --features "$features" --
    fi
}

try_candle_cuda() {
    local libdir="$PWD/target/cuda-link" cap
    export CUDARC_CUDA_VERSION="${CUDARC_CUDA_VERSION:-13000}"
    cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')
    export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-$cap}"
    export PATH="$(dirname "$NVCC"):$PATH"
    if ! link_cuda_libs "$libdir"; then
        models_note="model forwards not run: CUDA libraries for candle-cuda not found"
        return 0
    fi
    step "build --features cuda,candle-cuda"
    if RUSTFLAGS="-L native=$libdir" cargo build --release --features cuda,candle-cuda --all-targets 2>&1 | tail -n 20; then
        features=cuda,candle-cuda
        export RUSTFLAGS="-L native=$libdir" LD_LIBRARY_PATH="$cuda_lib_path:${LD_LIBRARY_PATH:-}"
        models_note="model forwards with candle-cuda"
    else
        models_note="model forwards not run: the candle-cuda build failed (see the log)"
    fi
}

if command -v cargo >/dev/null 2>&1; then
    run_with_cargo
else
    run_prebuilt
fi

step "PyTorch / transformers peer"
peer="| (not run: torch or transformers missing) | | | | | | |"
if python3 -c 'import torch, transformers; assert torch.cuda.is_available()' 2>/dev/null; then
    bounded "$(limit 240)" python3 scripts/gpu_peer.py --dtype fp16 --seconds 2 | tee "$benchlog" >&2 || true
    peer=$(grep '^|' "$benchlog" || echo "| (peer produced no rows) | | | | | | |")
    peer_versions=$(grep '^<!--' "$benchlog" || true)
fi
write_results
if ((${#engine_cmd[@]})); then
    run_engine bert-base "${engine_cmd[@]}"
    # The prefix cache on the device: 32 fixed tokens before the players, run once, then in
    # every row.
    for extra in "--template 32" "--template 32 --no-prefix-cache"; do
        read -ra engine_extra <<< "$extra"
        run_engine llama-1b "${engine_cmd[@]}"
    done
fi
echo "gpu-check: wrote $out" >&2
[[ "$tests_status" == passed ]]
