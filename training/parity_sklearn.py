#!/usr/bin/env python3
"""Parity check: nudge-train (Newton's method) vs scikit-learn (lbfgs) on the
same spec and the same folds, measured in one run.

Not run by CI. Usage (from the workspace root):

    pip install scikit-learn pandas
    cargo build --release -p nudge-train
    python3 training/parity_sklearn.py \
        --spec training/specs/uci_online_shoppers.toml \
        --data ../shared/data/online_shoppers_intention.csv \
        --k 5 --seed 42 --alpha 1

What it does:
1. `nudge-train folds` writes the stratified fold of every row (the script
   does not re-implement the fold rule, it reads it);
2. `nudge-train cv --alphas A --json` gives nudge-train's per-fold ROC-AUC and
   fit time on those folds;
3. scikit-learn fits the same transforms (read from the same spec TOML) on
   each fold's training rows: log1p = log1p(max(x, 0)) as the service does,
   clip / clip_quantile, StandardScaler (population std), booleans 0/1,
   one-hot with handle_unknown="ignore" (unseen = all zeros = the service's
   reference level), min_count folding; LogisticRegression(C = 1/alpha),
   the same objective (L2 on the coefficients, intercept unpenalised);
4. prints both AUCs and fit times per fold side by side (scikit-learn's
   also without the transforms and design matrix: `LogisticRegression.fit`
   alone).
"""
import argparse
import json
import subprocess
import sys
import time
import tomllib

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score


def quantile(sorted_vals, q):
    # Same rule as nudge-train: the value at round(q * (n - 1)).
    pos = int(round(min(max(q, 0.0), 1.0) * (len(sorted_vals) - 1)))
    return sorted_vals[pos]


def parse_bool(s):
    s = str(s).strip()
    if s in ("TRUE", "True", "true", "1"):
        return 1.0
    if s in ("FALSE", "False", "false", "0"):
        return 0.0
    raise ValueError(f"not a boolean: {s!r}")


def design(df, spec, train_idx, idx):
    """Learns transforms on train_idx, returns the matrices of train_idx and idx."""
    cols_tr, cols_ev = [], []
    header = list(df.columns)
    for name in header:
        if name == spec["label"]["column"]:
            continue
        c = spec["columns"][name]
        kind = c["kind"]
        if kind == "ignore":
            continue
        if kind in ("numeric", "boolean"):
            raw = df[name].map(parse_bool) if kind == "boolean" else df[name].astype(float)
            raw = raw.to_numpy(dtype=float)
            tr, ev = raw[train_idx].copy(), raw[idx].copy()
            constant = False
            for t in c.get("transforms", []):
                if t == "log1p":
                    tr, ev = np.log1p(np.maximum(tr, 0)), np.log1p(np.maximum(ev, 0))
                elif t == "standardise":
                    m, s = tr.mean(), tr.std()
                    if not s > 1e-12:
                        constant = True
                        break
                    tr, ev = (tr - m) / s, (ev - m) / s
                elif "clip" in t:
                    lo, hi = t["clip"]["lo"], t["clip"]["hi"]
                    tr, ev = np.clip(tr, lo, hi), np.clip(ev, lo, hi)
                elif "clip_quantile" in t:
                    srt = np.sort(tr)
                    lo = quantile(srt, t["clip_quantile"]["lo"])
                    hi = quantile(srt, t["clip_quantile"]["hi"])
                    tr, ev = np.clip(tr, lo, hi), np.clip(ev, lo, hi)
                else:
                    raise ValueError(f"unknown transform {t!r}")
            if constant or not tr.std() > 1e-12:
                continue
            cols_tr.append(tr)
            cols_ev.append(ev)
        elif kind == "categorical":
            vals = df[name].astype(str).str.strip().to_numpy()
            counts = pd.Series(vals[train_idx]).value_counts()
            for level in sorted(counts.index):
                if counts[level] >= c.get("min_count", 1):
                    cols_tr.append((vals[train_idx] == level).astype(float))
                    cols_ev.append((vals[idx] == level).astype(float))
        else:
            raise ValueError(f"unknown kind {kind!r}")
    return np.column_stack(cols_tr), np.column_stack(cols_ev)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--spec", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--alpha", type=float, default=1.0, help="nudge-train alpha; scikit-learn C = 1/alpha")
    ap.add_argument("--bin", default="target/release/nudge-train")
    ap.add_argument("--folds", default="/tmp/nudge_parity_folds.csv")
    args = ap.parse_args()

    subprocess.run([args.bin, "folds", "--spec", args.spec, "--data", args.data,
                    "--k", str(args.k), "--seed", str(args.seed), "--out", args.folds], check=True)
    out = subprocess.run([args.bin, "cv", "--spec", args.spec, "--data", args.data,
                          "--k", str(args.k), "--seed", str(args.seed),
                          "--alphas", str(args.alpha), "--json"],
                         check=True, capture_output=True, text=True).stdout
    nudge = json.loads(out)["results"][0]["folds"]

    with open(args.spec, "rb") as f:
        spec = tomllib.load(f)
    df = pd.read_csv(args.data, dtype=str, keep_default_na=False)
    label = spec["label"]
    y = df[label["column"]].str.strip().map(
        lambda v: 1 if v in label["positive"] else (0 if v in label["negative"] else None))
    if y.isna().any():
        sys.exit("label values outside the spec")
    y = y.to_numpy(dtype=int)
    fold = pd.read_csv(args.folds)["fold"].to_numpy()

    print(f"{len(df)} rows, {args.k}-fold stratified (nudge-train folds, seed {args.seed}), "
          f"alpha {args.alpha} = C {1 / args.alpha:g}")
    print(f"{'fold':>4} {'nudge AUC':>10} {'sklearn AUC':>12} {'diff':>9} {'nudge fit ms':>13} {'sklearn fit ms':>15}"
          f" {'(LR.fit only)':>14}")
    sk_aucs, sk_times, sk_lr_times = [], [], []
    for f in range(args.k):
        tr = np.where(fold != f)[0]
        va = np.where(fold == f)[0]
        t0 = time.perf_counter()
        xtr, xva = design(df, spec, tr, va)
        clf = LogisticRegression(C=1.0 / args.alpha, max_iter=1000)
        t1 = time.perf_counter()
        clf.fit(xtr, y[tr])
        secs = time.perf_counter() - t0
        sk_lr_times.append(time.perf_counter() - t1)
        auc = roc_auc_score(y[va], clf.predict_proba(xva)[:, 1])
        sk_aucs.append(auc)
        sk_times.append(secs)
        n = nudge[f]
        print(f"{f:>4} {n['roc_auc']:>10.4f} {auc:>12.4f} {n['roc_auc'] - auc:>+9.5f} "
              f"{1e3 * n['fit_seconds']:>13.1f} {1e3 * secs:>15.1f} {1e3 * sk_lr_times[-1]:>14.1f}")
    n_mean = np.mean([n["roc_auc"] for n in nudge])
    print(f"mean {n_mean:>10.4f} {np.mean(sk_aucs):>12.4f} {n_mean - np.mean(sk_aucs):>+9.5f} "
          f"{1e3 * np.mean([n['fit_seconds'] for n in nudge]):>13.1f} {1e3 * np.mean(sk_times):>15.1f}"
          f" {1e3 * np.mean(sk_lr_times):>14.1f}")
    print("fit time = learning the transforms + building the design matrix + fitting, per fold")


if __name__ == "__main__":
    main()
