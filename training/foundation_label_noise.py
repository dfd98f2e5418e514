"""Finding wrong labels: ``python -m training.foundation_label_noise --data PATH --device cpu``.

Simulation of the paper's purpose for active learning (re-annotating ECGs whose label is likely
wrong). Pool: every labelled PTB-XL train-fold ECG (normal/abnormal). For each noise rate and seed,
``round(rate * N)`` labels chosen at random are flipped. A logistic regression on frozen embeddings
is cross-fitted on the noisy labels (``--folds`` folds): each ECG is scored by a model that never
saw it, so a flipped label cannot be memorised. Rankings of the whole pool, reviewed from the top:

- ``random``: a random order (what reviewing without a model does);
- ``uncertainty``: ``1 - |2p - 1|`` (the served re-annotation term; it ignores the label);
- ``uncertainty+novelty``: ``training.foundation_active.batch_priority`` as served (no detector);
- ``disagreement``: ``|y - p|`` against the given (noisy) label;
- ``combined``: mean of disagreement and uncertainty.

Reported: recall of the flipped labels after reviewing 5, 10 and 20% of the pool, and the area
under the recall curve (mean recall over every review budget 1..N; random is about 0.5), mean and
95% t-interval over seeds. Features: the frozen CPC encoder stored as the checkpoint's linear
probe (``probe`` in ``ecg_models/weights/foundation.pt``); it never saw a label. The labels of the
ptb-xl-extra ``normal_list`` records are about 96% exact, so a few "correct" labels are wrong already:
that lowers every ranking's measured recall equally. Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from training.config import resolve_device
from training.foundation_active import audit_priority
from training.foundation_data import DEFAULT_DATA, load_ptbxl_arrays, mean_ci
from training.foundation_simulation import DEFAULT_CHECKPOINT, probe_encoder
from training.pretrain_foundation import embed

STRATEGIES = ("random", "uncertainty", "uncertainty+novelty", "disagreement", "combined")
BUDGETS = (0.05, 0.10, 0.20)


def out_of_fold_probability(x: np.ndarray, y: np.ndarray, folds: int, seed: int, c: float = 0.1) -> np.ndarray:
    """P(abnormal) (N,) for each row from a logistic regression fitted on the other folds only."""
    p = np.zeros(len(y))
    for fit, held in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000))
        p[held] = clf.fit(x[fit], y[fit]).predict_proba(x[held])[:, 1]
    return p


def strategy_scores(name: str, p: np.ndarray, noisy: np.ndarray, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Review score (N,) of one strategy, higher = review first."""
    if name == "random":
        return rng.random(len(p))
    if name == "uncertainty":
        return 1.0 - np.abs(2.0 * p - 1.0)
    if name == "uncertainty+novelty":
        # Served form, novelty against the other ECGs of the pool (a leave-one-out nearest neighbour).
        a = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-8)
        sim = a @ a.T
        np.fill_diagonal(sim, -np.inf)
        novelty = np.clip((1.0 - sim.max(axis=1)) / 2.0, 0.0, 1.0)
        return 0.5 * (1.0 - np.abs(2.0 * p - 1.0)) + 0.5 * novelty  # batch_priority's equal weights
    if name == "disagreement":
        return audit_priority(p, noisy, uncertainty_weight=0.0)
    if name == "combined":
        return audit_priority(p, noisy, uncertainty_weight=1.0)
    raise ValueError(f"unknown strategy {name!r}")


def recall_curve(scores: np.ndarray, flipped: np.ndarray) -> np.ndarray:
    """Fraction of flipped labels found after reviewing the top n, for n = 1..N (ties: stable order)."""
    order = np.argsort(-scores, kind="stable")
    return np.cumsum(flipped[order]) / max(1, int(flipped.sum()))


def simulate(
    x: np.ndarray, y: np.ndarray, *, rates: tuple[float, ...], seeds: int, folds: int
) -> dict[float, dict[str, np.ndarray]]:
    """{rate: {strategy: (seeds, N) recall curves}}."""
    out: dict[float, dict[str, np.ndarray]] = {}
    for rate in rates:
        curves = {s: np.zeros((seeds, len(y))) for s in STRATEGIES}
        for seed in range(seeds):
            rng = np.random.default_rng(seed)
            flipped = np.zeros(len(y), dtype=bool)
            flipped[rng.choice(len(y), int(round(rate * len(y))), replace=False)] = True
            noisy = np.where(flipped, 1 - y, y)
            p = out_of_fold_probability(x, noisy, folds, seed)
            for name in STRATEGIES:
                curves[name][seed] = recall_curve(strategy_scores(name, p, noisy, x, rng), flipped)
        out[rate] = curves
    return out


def summarise(res: dict[float, dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per rate and strategy: recall at the budgets and area under the recall curve, mean and CI."""
    summary: dict[str, Any] = {}
    for rate, curves in res.items():
        rows = {}
        for name, c in curves.items():
            n = c.shape[1]
            row = {f"recall@{int(b * 100)}%": mean_ci(c[:, max(1, int(round(b * n))) - 1]) for b in BUDGETS}
            row["area"] = mean_ci(c.mean(axis=1))
            rows[name] = row
        summary[f"{rate:g}"] = rows
    return summary


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--device", default="cpu", help="torch device for the embeddings (cpu, cuda)")
    parser.add_argument("--rates", default="0.05,0.1,0.2", help="fractions of labels flipped")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    arrays, _, sid = load_ptbxl_arrays(args.data)
    pool = arrays.where("train")
    pool = pool.subset(np.flatnonzero(pool.label >= 0))
    model = probe_encoder(args.checkpoint).to(resolve_device(args.device))
    x = embed(model, pool.signal, pool.lead_mask).astype(np.float64)
    y = pool.label.astype(int)
    rates = tuple(float(r) for r in args.rates.split(",") if r)
    summary = summarise(simulate(x, y, rates=rates, seeds=args.seeds, folds=args.folds))
    print("| flipped | ranking | recall@5% | recall@10% | recall@20% | area under recall curve |")
    print("|---:|---|---:|---:|---:|---:|")
    for rate, rows in summary.items():
        for name, row in rows.items():
            cells = " | ".join(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in row.values())
            print(f"| {float(rate):.0%} | {name} | {cells} |")
    result = {"n_pool": len(y), "n_abnormal": int(y.sum()), "seeds": args.seeds, "folds": args.folds}
    result.update({"data_split_id": sid, "results": summary})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
