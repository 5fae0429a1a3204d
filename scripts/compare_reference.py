"""Accuracy and speed of spex's SPEX decoder against the reference (shapiq 1.4.1's SPEX over
sparse-transform 0.2.1) on the same planted sparse functions, with and without noise.

Both decoders see a function with `terms` random Fourier coefficients of degree <= `degree` plus
Gaussian noise; both are scored by R^2 against the noise-free function on the same 1 000 uniform
held-out masks. The reference samples its own design (numpy RNG), spex its own (`spex design`),
at the same budget.

Needs a Python with shapiq==1.4.1 and sparse-transform==0.2.1 (see ../shared/docs/README.md) and
a built spex binary:
    cargo build --release
    python scripts/compare_reference.py --spex target/release/spex
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

import numpy as np


def planted(n, terms, degree, rng):
    coefs = {(): 1.0}
    while len(coefs) < terms + 1:
        order = rng.integers(1, degree + 1)
        key = tuple(sorted(rng.choice(n, size=order, replace=False).tolist()))
        coefs.setdefault(key, float(rng.choice([-1, 1]) * rng.uniform(0.5, 1.5)))
    return coefs


def evaluate(coefs, masks):
    out = np.zeros(len(masks))
    for key, value in coefs.items():
        sign = np.ones(len(masks))
        for i in key:
            sign *= 1 - 2 * masks[:, i]
        out += value * sign
    return out


def r2(pred, truth):
    return 1 - np.sum((truth - pred) ** 2) / np.sum((truth - truth.mean()) ** 2)


def run_reference(n, budget, coefs, noise, rng, decoder):
    from shapiq.approximator.sparse import SPEX

    def game(masks):
        m = masks.astype(int)
        return evaluate(coefs, m) + noise * rng.standard_normal(len(m))

    approx = SPEX(n=n, index="FBII", max_order=5, decoder_type=decoder, random_state=0)
    used = approx._set_transform_budget(budget)
    from sparse_transform.qsft.qsft import transform
    from sparse_transform.qsft.signals.input_signal_subsampled import SubsampledSignal

    signal = SubsampledSignal(func=lambda x: game(x.astype(bool)), n=n, q=2, query_args=approx.query_args)
    start = time.time()
    out = transform(signal, **approx.decoder_args)
    seconds = time.time() - start
    return {tuple(np.nonzero(k)[0]): float(np.real(v)) for k, v in out.items()}, used, seconds


def run_spex(spex, n, budget, coefs, noise, rng, seed, workdir):
    masks_path = os.path.join(workdir, "masks.txt")
    subprocess.run([spex, "design", "--n", str(n), "--budget", str(budget), "--seed", str(seed),
                    "--holdout", "0", "--out", masks_path], check=True, capture_output=True)
    rows = [l.strip() for l in open(masks_path) if l.strip() and not l.startswith("#")]
    masks = np.array([[c == "1" for c in r] for r in rows], dtype=int)
    values = evaluate(coefs, masks) + noise * rng.standard_normal(len(masks))
    values_path = os.path.join(workdir, "values.txt")
    np.savetxt(values_path, values, fmt="%.17g")
    result_path = os.path.join(workdir, "result.json")
    subprocess.run([spex, "decode", "--masks", masks_path, "--values", values_path, "--out", result_path],
                   check=True, capture_output=True)
    result = json.load(open(result_path))
    fourier = {tuple(e["players"]): e["value"] for e in result["fourier"]}
    return fourier, len(masks), result["timings"]["decode_seconds"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--spex", default="target/release/spex")
    p.add_argument("--n", type=int, nargs="+", default=[64, 256])
    p.add_argument("--budget", type=int, default=10000)
    p.add_argument("--terms", type=int, default=20)
    p.add_argument("--degree", type=int, default=3)
    p.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.3, 1.0])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--decoder", default="soft", choices=["soft", "hard"])
    args = p.parse_args()
    print(f"{'n':>5} {'noise':>6} {'samples':>8} {'ref R2':>8} {'spex R2':>8} {'ref s':>8} {'spex s':>8}")
    with tempfile.TemporaryDirectory() as workdir:
        for n in args.n:
            for noise in args.noise:
                rows = []
                for seed in range(args.seeds):
                    rng = np.random.default_rng(seed)
                    coefs = planted(n, args.terms, args.degree, rng)
                    test = rng.integers(0, 2, size=(1000, n))
                    truth = evaluate(coefs, test)
                    np.random.seed(seed)  # the reference draws its design from numpy's global RNG
                    ref, used, ref_s = run_reference(n, args.budget, coefs, noise, np.random.default_rng(100 + seed),
                                                     args.decoder)
                    ours, ours_used, ours_s = run_spex(args.spex, n, args.budget, coefs, noise,
                                                       np.random.default_rng(100 + seed), seed, workdir)
                    rows.append((used, ours_used, r2(evaluate(ref, test), truth), r2(evaluate(ours, test), truth),
                                 ref_s, ours_s))
                r = np.array(rows)
                print(f"{n:>5} {noise:>6.2f} {int(r[0, 1]):>8} {r[:, 2].mean():>8.4f} {r[:, 3].mean():>8.4f} "
                      f"{r[:, 4].mean():>8.2f} {r[:, 5].mean():>8.4f}", flush=True)


if __name__ == "__main__":
    main()
