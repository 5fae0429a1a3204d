#!/usr/bin/env python3
"""An external driver for data attribution: retrains your own model on every training subset
spex asks for, over the JSON-lines driver protocol (README, "The driver protocol").

    spex explain --oracle "python3 scripts/retrain_driver.py train.csv test.csv 0" --n 120 \
        --method proxyspex --budget 2000 --out retrain-run

Players are the rows of train.csv (as written by scripts/data_example.py: id, features, label);
the value of a mask is the log-odds of the true class of row 0 of test.csv under a scikit-learn
LogisticRegression fitted on the kept rows. A subset with fewer than two classes gets 0. Swap in
any model: the protocol only needs one number per mask.
"""
import json
import sys

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler


def load(path):
    rows = np.loadtxt(path, delimiter=",", skiprows=1, dtype=str)
    return rows[:, 1:-1].astype(float), rows[:, -1]


def main():
    x, y = load(sys.argv[1])
    tx, ty = load(sys.argv[2])
    scaler = StandardScaler().fit(x)
    x, t = scaler.transform(x), scaler.transform(tx[int(sys.argv[3])][None, :])
    label = ty[int(sys.argv[3])]
    for line in sys.stdin:
        req = json.loads(line)
        values = []
        for mask in req["masks"]:
            keep = np.frombuffer(mask.encode(), dtype=np.uint8) == ord("1")
            if len(set(y[keep])) < 2:
                values.append(0.0)
                continue
            model = LogisticRegression(max_iter=1000).fit(x[keep], y[keep])
            p = model.predict_proba(t)[0][list(model.classes_).index(label)] if label in model.classes_ else 0.0
            p = min(max(p, 1e-12), 1 - 1e-12)
            values.append(float(np.log(p) - np.log1p(-p)))
        print(json.dumps({"id": req["id"], "values": values}), flush=True)


if __name__ == "__main__":
    main()
