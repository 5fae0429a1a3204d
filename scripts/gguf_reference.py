#!/usr/bin/env python3
"""Independent reference for the default LLM: SmolLM2-135M-Instruct (GGUF Q4_1) in plain numpy.

Reads the GGUF file with the PyPI `gguf` package (weights dequantized by `gguf.quants`, float64
compute), tokenizes with its own byte-level BPE over the GGUF merges (digits split one by one,
then the GPT-2 pre-tokenizer regex), runs the Llama forward by the textbook (RMSNorm, interleaved
RoPE as llama.cpp lays out Q/K, grouped-query attention, SwiGLU, LM head tied to token_embd), and
writes a small JSON fixture that tests/default_models.rs compares spex against: token ids, and at
every position the top-5 logits, the log-sum-exp and the logits of a few probe tokens.

Shares no code with spex. Usage (about a minute; needs ~2 GB RAM):

    python3 -m venv /tmp/gguf-venv && /tmp/gguf-venv/bin/pip install gguf==0.19.0   # pulls numpy
    /tmp/gguf-venv/bin/python scripts/gguf_reference.py \
        ~/.cache/spex/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf \
        tests/fixtures/smollm2_reference.json
"""

import json
import re
import sys

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize

PROMPTS = ["The capital of France is", "In 1492, Columbus sailed the ocean blue."]
PROBES = [" Paris", " the", " a", ".", "\n"]


def field(reader, key):
    return reader.fields[key].contents()


# ---------------------------------------------------------------------------- tokenizer


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


# GPT-2's pre-tokenizer regex with \p{L} -> [^\W\d_] and \p{N} -> \d (Python's `re` has no \p).
GPT2_RE = re.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+""")


class Bpe:
    def __init__(self, tokens, merges):
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.byte_map = bytes_to_unicode()

    def word(self, piece):
        parts = [self.byte_map[b] for b in piece.encode("utf-8")]
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), 1 << 60), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == 1 << 60:
                break
            parts = parts[:i] + [parts[i] + parts[i + 1]] + parts[i + 2 :]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        # Digits(individual_digits=True): every digit is its own piece, then the byte-level regex.
        pieces = [p for p in re.split(r"(\d)", text) if p]
        ids = []
        for p in pieces:
            for w in GPT2_RE.findall(p):
                ids.extend(self.word(w))
        return ids


# ---------------------------------------------------------------------------- model


def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope_interleaved(x, pos, base):
    # x: [L, H, D]; pairs (2i, 2i+1) rotate by pos * base^(-2i/D) (llama.cpp "normal" RoPE).
    d = x.shape[-1]
    inv = base ** (-np.arange(0, d, 2, dtype=np.float64) / d)
    ang = pos[:, None] * inv[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = x0 * c - x1 * s
    out[..., 1::2] = x0 * s + x1 * c
    return out


def main():
    gguf_path, out_path = sys.argv[1], sys.argv[2]
    r = GGUFReader(gguf_path)
    assert field(r, "general.architecture") == "llama"
    n_layer = int(field(r, "llama.block_count"))
    n_head = int(field(r, "llama.attention.head_count"))
    n_kv = int(field(r, "llama.attention.head_count_kv"))
    base = float(field(r, "llama.rope.freq_base"))
    eps = float(field(r, "llama.attention.layer_norm_rms_epsilon"))
    tokens = field(r, "tokenizer.ggml.tokens")
    merges = field(r, "tokenizer.ggml.merges")
    bpe = Bpe(tokens, merges)

    w = {t.name: dequantize(t.data, t.tensor_type).astype(np.float64).reshape([int(d) for d in reversed(t.shape)]) for t in r.tensors}
    emb = w["token_embd.weight"]  # [V, E]
    head = w.get("output.weight", emb)  # tied when absent
    e = emb.shape[1]
    d = e // n_head

    def forward(ids):
        n = len(ids)
        x = emb[ids]
        pos = np.arange(n, dtype=np.float64)
        causal = np.triu(np.full((n, n), -np.inf), 1)
        for l in range(n_layer):
            p = f"blk.{l}."
            h = rms_norm(x, w[p + "attn_norm.weight"], eps)
            q = rope_interleaved((h @ w[p + "attn_q.weight"].T).reshape(n, n_head, d), pos, base)
            k = rope_interleaved((h @ w[p + "attn_k.weight"].T).reshape(n, n_kv, d), pos, base)
            v = (h @ w[p + "attn_v.weight"].T).reshape(n, n_kv, d)
            out = np.empty((n, n_head, d))
            for hh in range(n_head):
                g = hh // (n_head // n_kv)
                s = q[:, hh, :] @ k[:, g, :].T / np.sqrt(d) + causal
                s = np.exp(s - s.max(-1, keepdims=True))
                out[:, hh, :] = (s / s.sum(-1, keepdims=True)) @ v[:, g, :]
            x = x + out.reshape(n, e) @ w[p + "attn_output.weight"].T
            h = rms_norm(x, w[p + "ffn_norm.weight"], eps)
            gate = h @ w[p + "ffn_gate.weight"].T
            up = h @ w[p + "ffn_up.weight"].T
            x = x + (gate / (1 + np.exp(-gate)) * up) @ w[p + "ffn_down.weight"].T
        return rms_norm(x, w["output_norm.weight"], eps) @ head.T  # [n, V]

    probes = [bpe.encode(p) for p in PROBES]
    assert all(len(p) == 1 for p in probes), probes
    probes = [p[0] for p in probes]
    cases = []
    for prompt in PROMPTS:
        ids = bpe.encode(prompt)
        logits = forward(ids)
        m = logits.max(-1, keepdims=True)
        lse = (m[:, 0] + np.log(np.exp(logits - m).sum(-1)))
        top = np.argsort(-logits, axis=-1)[:, :5]
        cases.append({
            "prompt": prompt,
            "ids": ids,
            "top5_ids": top.tolist(),
            "top5_logits": [[round(float(logits[i, t]), 5) for t in row] for i, row in enumerate(top)],
            "logsumexp": [round(float(x), 5) for x in lse],
            "probe_logits": [[round(float(logits[i, t]), 5) for t in probes] for i in range(len(ids))],
        })
        print(f"{prompt!r}: ids {ids}; next token {tokens[top[-1, 0]]!r}, "
              f"p(' Paris') = {np.exp(logits[-1, probes[0]] - lse[-1]):.4f}", file=sys.stderr)
    with open(out_path, "w") as f:
        json.dump({
            "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
            "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            "generator": "scripts/gguf_reference.py (numpy float64 over gguf.quants.dequantize)",
            "probe_ids": probes,
            "cases": cases,
        }, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
