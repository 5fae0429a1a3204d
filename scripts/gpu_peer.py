#!/usr/bin/env python3
"""The side-by-side peer of spex's GPU benchmark: the same masked batches through PyTorch / Hugging
Face transformers on the same GPU, batched, fp16 (and bf16), timed the same way.

A masked query is one row: the prompt with some token players hidden as attention keys (the
attention mask of the row) and the log-probability of a fixed target continuation read off
log_softmax at the target positions (teacher forcing), exactly what `spex` computes per mask.
Models are random-weight LlamaForCausalLM of the given shapes (no download; the GPU machines have
no network), so spex and this peer run the same arithmetic.

Prints one markdown table row per (shape, batch, prompt length): masked queries/s, tokens/s,
ms/query. Usage: gpu_peer.py [--shapes smollm2-135m,llama-1b] [--batches 16,64,256]
[--lens 32,128] [--dtype fp16] [--seconds 5] [--device cuda]
"""
import argparse
import time

SHAPES = {
    # SmolLM2-135M (the default model's architecture).
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3, vocab_size=49152),
    # Llama 3.2 1B.
    "llama-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16,
                     num_attention_heads=32, num_key_value_heads=8, vocab_size=128256),
    # For a smoke test of this script (e.g. --device cpu).
    "tiny": dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2, vocab_size=1000),
}
TARGET_LEN = 4


def build(shape, dtype, device, torch, transformers):
    cfg = transformers.LlamaConfig(max_position_embeddings=4096, tie_word_embeddings=True,
                                   attn_implementation="sdpa", **SHAPES[shape])
    torch.manual_seed(0)
    with torch.device(device):
        model = transformers.LlamaForCausalLM(cfg).to(dtype).eval()
    return model, cfg


def masked_batch(batch, prompt_len, vocab, device, torch, gen):
    """Random prompt + target ids and a random key mask per row (target and first token kept)."""
    length = prompt_len + TARGET_LEN
    ids = torch.randint(0, vocab, (batch, length), generator=gen, device="cpu")
    keep = torch.rand((batch, length), generator=gen) < 0.5
    keep[:, 0] = True
    keep[:, prompt_len - 1:] = True
    return ids.to(device, non_blocking=True), keep.long().to(device, non_blocking=True)


def score(model, ids, keep, prompt_len, torch):
    """Sum over the target of log p(target_k | masked prompt, target_<k), per row.

    Only the last TARGET_LEN + 1 positions go through the LM head (`logits_to_keep`), the
    strongest use of transformers for this job; older versions without it compute all."""
    try:
        out = model(input_ids=ids, attention_mask=keep, logits_to_keep=TARGET_LEN + 1)
        logits = out.logits[:, :-1].float()
    except TypeError:
        logits = model(input_ids=ids, attention_mask=keep).logits[:, prompt_len - 1:-1].float()
    tgt = ids[:, prompt_len:]
    return torch.log_softmax(logits, -1).gather(-1, tgt.unsqueeze(-1)).squeeze(-1).sum(-1)


def sync(device, torch):
    if device == "cuda":
        torch.cuda.synchronize()


def run(shape, batch, prompt_len, dtype, device, seconds, torch, transformers, cache):
    if shape not in cache:
        cache.clear()
        if device == "cuda":
            torch.cuda.empty_cache()
        cache[shape] = build(shape, dtype, device, torch, transformers)
    model, cfg = cache[shape]
    gen = torch.Generator().manual_seed(batch * 1000 + prompt_len)
    batches = [masked_batch(batch, prompt_len, cfg.vocab_size, device, torch, gen) for _ in range(4)]
    with torch.inference_mode():
        try:
            for ids, keep in batches[:2]:  # warm-up (kernel selection, allocator)
                score(model, ids, keep, prompt_len, torch)
            sync(device, torch)
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds:
                ids, keep = batches[done % len(batches)]
                score(model, ids, keep, prompt_len, torch).cpu()  # values come back, as in spex
                done += 1
            elapsed = time.perf_counter() - start
        except torch.cuda.OutOfMemoryError:
            return f"| hf-{dtype_name(dtype, torch)} | {shape} | {batch} | {prompt_len} | OOM | | |"
    queries = done * batch
    tokens = queries * (prompt_len + TARGET_LEN)
    return (f"| hf-{dtype_name(dtype, torch)} | {shape} | {batch} | {prompt_len} | {queries / elapsed:.1f} "
            f"| {tokens / elapsed:.0f} | {1000 * elapsed / queries:.3f} |")


def dtype_name(dtype, torch):
    return {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapes", default="smollm2-135m,llama-1b")
    ap.add_argument("--batches", default="16,64,256")
    ap.add_argument("--lens", default="32,128")
    ap.add_argument("--dtype", default="fp16", choices=["fp16", "bf16", "fp32"])
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--device", default="cuda", help="cuda, or cpu for a smoke test (--shapes tiny)")
    args = ap.parse_args()
    import torch
    import transformers
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_peer.py: no CUDA device visible to PyTorch")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[args.dtype]
    name = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"<!-- torch {torch.__version__}, transformers {transformers.__version__}, {name} -->")
    cache = {}
    for shape in args.shapes.split(","):
        for prompt_len in map(int, args.lens.split(",")):
            for batch in map(int, args.batches.split(",")):
                print(run(shape, batch, prompt_len, dtype, args.device, args.seconds, torch, transformers, cache),
                      flush=True)


if __name__ == "__main__":
    main()
