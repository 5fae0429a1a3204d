"""Writes tests/fixtures/bch_delays.json: the SPEX delay matrices of the reference
(sparse-transform 0.2.1 over galois 0.4.11) for a few (n, t), so the Rust BCH code can be
checked against them bit for bit.

Run with a Python that has `sparse-transform==0.2.1` installed (see ../shared/docs/README.md):
    python scripts/bch_fixtures.py > tests/fixtures/bch_delays.json
"""
import json

import numpy as np
from sparse_transform.qsft.codes.BCH import BCH

CASES = [(1, 5), (11, 5), (30, 5), (50, 5), (200, 4), (1000, 5), (40, 2), (16, 3), (300, 6)]

out = []
for n, t in CASES:
    code = BCH(n, t)
    D = np.array(code.get_delay_matrix(), dtype=int)
    out.append({
        "n": n,
        "t": t,
        "code": [int(code.n), int(code.k)],
        "delays": ["".join(str(b) for b in row) for row in D],
    })
print(json.dumps(out))
