"""Times the reference ProxySPEX decoder (shapiq 1.4.1 + LightGBM 4.7.0) on one benchmark case.

Usage:
    /work/refenv/bin/python scripts/proxyspex_reference.py CASE.json [--single]

CASE.json is written by `SPEX_BENCH_DUMP=DIR cargo bench --bench proxyspex` (as
DIR/case-n{N}-b{BUDGET}-seed{S}.json), so both implementations see exactly the same training masks, values
and held-out masks. The reference environment: a Python 3.11 venv with shapiq==1.4.1,
sparse-transform==0.2.1 and lightgbm==4.7.0 from PyPI (nothing of it is in this repository).

The decoder runs
the `decoder_type="proxyspex"` branch of shapiq's `Sparse.approximate` on those masks: LightGBM
in GridSearchCV (max_depth {3,5} x n_estimators {500,1000} x learning_rate {0.01,0.1}, 5-fold, R2),
tree -> Fourier, 95 % energy truncation, RidgeCV refit (shapiq's own `_lgboost_to_fourier` and
`_refine`). Prints seconds and held-out R2.

With --single, the grid search is skipped: one LightGBM fit with the grid's usual winner
(max_depth 5, 1000 trees, learning rate 0.1, n_jobs=1), to compare the tree learner alone.
"""

import json
import sys
import time

import lightgbm as lgb
import numpy as np
import pandas as pd
from shapiq.approximator.sparse import ProxySPEX
from sklearn.model_selection import GridSearchCV


def to_matrix(rows):
    return np.array([[c == "1" for c in r] for r in rows], dtype=float)


def fourier_eval(coefs, x):
    out = np.zeros(x.shape[0])
    for k, v in coefs.items():
        k = list(k)
        sign = 1 - 2 * (x[:, k].sum(axis=1) % 2) if k else np.ones(x.shape[0])
        out += v * sign
    return out


def main():
    case = json.load(open(sys.argv[1]))
    x = to_matrix(case["train_masks"])
    y = np.array(case["train_values"])
    xh = to_matrix(case["holdout_masks"])
    yh = np.array(case["holdout_values"])
    n = x.shape[1]

    sp = ProxySPEX(n=n, index="FBII", max_order=1, random_state=0)
    t0 = time.perf_counter()
    frame = pd.DataFrame(x, columns=[f"f{i}" for i in range(n)])
    if "--single" in sys.argv:
        model = lgb.LGBMRegressor(verbose=-1, n_jobs=1, random_state=0, max_depth=5, n_estimators=1000, learning_rate=0.1)
        model.fit(frame, y)
        best, best_params, best_score = model, {"max_depth": 5, "n_estimators": 1000, "learning_rate": 0.1}, None
    else:
        base = lgb.LGBMRegressor(verbose=-1, n_jobs=1, random_state=0)
        grid = GridSearchCV(base, param_grid=sp.decoder_args, scoring="r2", cv=5, verbose=0, n_jobs=1)
        grid.fit(frame, y)
        best, best_params, best_score = grid.best_estimator_, grid.best_params_, grid.best_score_
    t_grid = time.perf_counter() - t0
    raw = sp._lgboost_to_fourier(best.booster_.dump_model())
    refined = sp._refine(raw, x, y)
    secs = time.perf_counter() - t0

    pred_proxy = best.predict(pd.DataFrame(xh, columns=frame.columns))
    pred = fourier_eval(refined, xh)

    def r2(p):
        return 1 - ((yh - p) ** 2).sum() / ((yh - yh.mean()) ** 2).sum()

    print(json.dumps({
        "n": n,
        "samples": len(y),
        "best_params": best_params,
        "cv_r2": best_score,
        "fit_seconds": round(t_grid, 2),
        "seconds": round(secs, 2),
        "coefficients_extracted": len(raw),
        "coefficients_kept": len(refined),
        "proxy_holdout_r2": r2(pred_proxy),
        "holdout_r2": r2(pred),
    }, indent=1))


if __name__ == "__main__":
    main()
