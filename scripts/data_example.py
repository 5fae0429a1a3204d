#!/usr/bin/env python3
"""Exports the worked example of `spex data` (README, "Data attribution"): a subset of the
Wisconsin breast-cancer data set that ships with scikit-learn (`sklearn.datasets.load_breast_cancer`,
569 tumours, 30 numeric features, labels malignant/benign) as two CSV files.

    python3 scripts/data_example.py OUT_DIR [--train 120] [--test 20] [--seed 0]

writes OUT_DIR/train.csv and OUT_DIR/test.csv with a header line: `id` (the example's row in the
full data set), the 30 features, and `label`. Train and test rows are disjoint, drawn without
replacement with stratification by label. Needs numpy and scikit-learn (any recent version).
"""
import argparse
import csv
import os

import numpy as np
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split


def write(path, ids, x, y, names, classes):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id"] + [n.replace(" ", "_") for n in names] + ["label"])
        for i, row, label in zip(ids, x, y):
            w.writerow([int(i)] + [repr(float(v)) for v in row] + [classes[label]])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("--train", type=int, default=120)
    p.add_argument("--test", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    data = load_breast_cancer()
    ids = np.arange(len(data.target))
    train_ids, rest = train_test_split(ids, train_size=a.train, stratify=data.target, random_state=a.seed)
    test_ids, _ = train_test_split(rest, train_size=a.test, stratify=data.target[rest], random_state=a.seed)
    os.makedirs(a.out, exist_ok=True)
    for name, sel in (("train.csv", np.sort(train_ids)), ("test.csv", np.sort(test_ids))):
        write(os.path.join(a.out, name), sel, data.data[sel], data.target[sel], data.feature_names, data.target_names)
        print(f"wrote {os.path.join(a.out, name)}: {len(sel)} examples")


if __name__ == "__main__":
    main()
