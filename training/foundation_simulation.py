"""Active-learning simulation: ``python -m training.foundation_simulation [--checkpoint FILE]``.

Pool = labelled PTB-XL train-fold records with full codes (the subset's folds 1–8); test = fold
10. Features = embeddings of the *CPC-pretrained, frozen* encoder (the linear-probe encoder
stored in the checkpoint; it never saw a label, so the simulation does not leak labels through
the features). Each seed starts from 10 random labels (both classes), then acquires ``step``
labels per round either by :func:`training.foundation_active.rank_for_review` (uncertainty of
the current classifier + novelty w.r.t. the labelled set; no detector scores here) or at random,
refits a logistic regression and records the test AUROC. Prints a table; last line is JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from ecg_models.foundation import build_foundation
from training.config import resolve_device
from training.foundation_active import rank_for_review
from training.foundation_data import DEFAULT_DATA, load_ptbxl_arrays, safe_auroc
from training.pretrain_foundation import embed

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "ecg_models" / "weights" / "foundation.pt"


def probe_encoder(checkpoint: Path) -> torch.nn.Module:
    """The frozen pretrained encoder (+ pooling) stored as the checkpoint's linear-probe baseline."""
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_foundation(ckpt["model_config"])
    state = model.state_dict()
    source = ckpt["probe"]["model"] if ckpt.get("probe") else ckpt["model"]
    state.update({k: v.float() for k, v in source.items()})
    model.load_state_dict(state)
    return model.eval()


def simulate(
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    seeds: int,
    start: int,
    step: int,
    rounds: int,
) -> dict[str, np.ndarray]:
    """Return {"ranking": (seeds, rounds + 1) AUROC, "random": ...}."""
    scaler = StandardScaler().fit(x_pool)
    xp, xt = scaler.transform(x_pool), scaler.transform(x_test)
    out = {"ranking": np.zeros((seeds, rounds + 1)), "random": np.zeros((seeds, rounds + 1))}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        while True:
            init = rng.choice(len(y_pool), start, replace=False)
            if 0 < y_pool[init].sum() < start:
                break
        for strategy in out:
            labelled = list(init)
            srng = np.random.default_rng(1000 + seed)
            for r in range(rounds + 1):
                clf = LogisticRegression(C=0.1, max_iter=2000).fit(xp[labelled], y_pool[labelled])
                out[strategy][seed, r] = safe_auroc(y_test.astype(float), clf.predict_proba(xt)[:, 1])
                if r == rounds:
                    break
                rest = np.setdiff1d(np.arange(len(y_pool)), labelled)
                if strategy == "random":
                    pick = srng.choice(rest, step, replace=False)
                else:
                    p = clf.predict_proba(xp[rest])[:, 1]
                    order = rank_for_review(p, None, x_pool[rest], x_pool[labelled])
                    pick = rest[order[:step]]
                labelled.extend(int(i) for i in pick)
    return out


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--start", type=int, default=10)
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--device", default="cpu", help="torch device for the embeddings (cpu, cuda)")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    arrays, _, sid = load_ptbxl_arrays(args.data)
    pool = arrays.where("train")
    pool = pool.subset(np.flatnonzero(pool.full_codes))
    test = arrays.where("test")
    model = probe_encoder(args.checkpoint).to(resolve_device(args.device))
    x_pool, x_test = embed(model, pool.signal, pool.lead_mask), embed(model, test.signal, test.lead_mask)
    res = simulate(
        x_pool, pool.label, x_test, test.label, seeds=args.seeds, start=args.start, step=args.step, rounds=args.rounds
    )
    n_labels = [args.start + r * args.step for r in range(args.rounds + 1)]
    print("| labels | ranking AUROC (mean ± sd) | random AUROC (mean ± sd) |")
    print("|---:|---:|---:|")
    for r, n in enumerate(n_labels):
        a, b = res["ranking"][:, r], res["random"][:, r]
        print(f"| {n} | {a.mean():.3f} ± {a.std():.3f} | {b.mean():.3f} ± {b.std():.3f} |")
    summary = {
        "n_pool": len(pool),
        "n_test": len(test),
        "seeds": args.seeds,
        "labels": n_labels,
        "ranking_mean": [round(float(v), 4) for v in res["ranking"].mean(0)],
        "random_mean": [round(float(v), 4) for v in res["random"].mean(0)],
        "area_ranking": round(float(res["ranking"].mean()), 4),
        "area_random": round(float(res["random"].mean()), 4),
        "seeds_ranking_better_area": int((res["ranking"].mean(1) > res["random"].mean(1)).sum()),
        "data_split_id": sid,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
