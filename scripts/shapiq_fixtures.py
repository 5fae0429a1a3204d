#!/usr/bin/env python3
"""Generate tests/fixtures/shapiq_indices.json: reference interaction indices from shapiq.

Run with the reference environment (shapiq 1.4.1):

    /work/refenv/bin/python scripts/shapiq_fixtures.py

Each case is a random sparse Möbius representation (coefficients of degree <= 4, some nested so
that supports overlap, sometimes with an empty-set term) and, for every index that shapiq's
MoebiusConverter implements (SV, BV, SII, k-SII, STII, FSII, FBII) and orders 1-3, shapiq's output:
its stored entries and its baseline_value. shapiq does not store the empty set for SII/SV (only the
baseline), so the consumer compares the empty set against baseline_value where it is absent.

The output is deterministic (fixed seed) and small enough to commit.
"""

from __future__ import annotations

import json
import warnings
from importlib.metadata import version
from pathlib import Path

import numpy as np

from shapiq.game_theory.moebius_converter import MoebiusConverter
from shapiq.interaction_values import InteractionValues

SEED = 20250601
OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "shapiq_indices.json"

# (name, players, number of random "parent" supports, include an empty-set coefficient)
CASES = [("n6", 6, 6, True), ("n12", 12, 6, False), ("n40", 40, 8, True)]
ORDERS = [1, 2, 3]
INDICES = ["SII", "k-SII", "STII", "FSII", "FBII"]  # plus SV and BV at order 1


def random_moebius(rng: np.random.Generator, n: int, parents: int, with_empty: bool) -> dict:
    """Sparse Möbius coefficients of degree <= 4 whose supports overlap (nested subsets)."""
    coefs: dict[tuple[int, ...], float] = {}
    for _ in range(parents):
        size = int(rng.integers(2, 5))  # 2..4
        parent = sorted(int(p) for p in rng.choice(n, size=size, replace=False))
        coefs[tuple(parent)] = float(rng.normal())
        # one or two proper subsets of it, so that several coefficients share players
        for _ in range(int(rng.integers(1, 3))):
            k = int(rng.integers(1, size))
            sub = sorted(int(p) for p in rng.choice(parent, size=k, replace=False))
            coefs[tuple(sub)] = float(rng.normal())
    # a stray singleton far from the rest
    coefs[(int(rng.integers(0, n)),)] = float(rng.normal())
    if with_empty:
        coefs[()] = float(rng.normal())
    return coefs


def entries(values: dict) -> list:
    return [[list(k), float(v)] for k, v in sorted(values.items(), key=lambda kv: (len(kv[0]), kv[0]))]


def main() -> None:
    rng = np.random.default_rng(SEED)
    cases = []
    for name, n, parents, with_empty in CASES:
        moebius = random_moebius(rng, n, parents, with_empty)
        lookup = {k: i for i, k in enumerate(moebius)}
        iv = InteractionValues(
            values=np.array(list(moebius.values())),
            interaction_lookup=lookup,
            index="Moebius",
            min_order=0,
            max_order=n,
            n_players=n,
            baseline_value=moebius.get((), 0.0),
        )
        converter = MoebiusConverter(iv)
        results = []
        runs = [("SV", 1), ("BV", 1)] + [(ix, o) for o in ORDERS for ix in INDICES]
        for index, order in runs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = converter(index, order)
            results.append(
                {
                    "index": index,
                    "order": order,
                    "baseline_value": float(out.baseline_value),
                    "values": entries(out.interactions),
                }
            )
        cases.append({"name": name, "n": n, "moebius": entries(moebius), "results": results})

    doc = {
        "generator": "scripts/shapiq_fixtures.py",
        "shapiq_version": version("shapiq"),
        "seed": SEED,
        "cases": cases,
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(doc, separators=(",", ":")) + "\n")
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
