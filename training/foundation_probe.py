"""Linear-probe learning curve: ``python -m training.foundation_probe --data PATH --device cpu``.

Does CPC pretraining help at this data size, and do the negatives matter? For each encoder and
seed the encoder is frozen, every ECG is embedded once (pooled embedding, eval mode), and a
standardised logistic regression is fitted on 10, 25, 50 and 100% of the labelled train-fold ECGs
(a stratified subset drawn per seed, the same for every encoder, so the rows are paired). Its C is
chosen on fold 9 (validation) from ``C_GRID``; fold 10 (test) is scored with that C and never
used to choose anything. Normal/abnormal AUROC, mean and 95% t-interval over seeds, plus the
paired difference to the random-init encoder.

Encoders (``--runs`` holds ``{variant}_s{seed}/best.pt`` from ``training.pretrain_foundation``):
``random`` (the architecture at its seed's initialisation, no training) and each pretrained
variant found there (``shifted``, ``window``, ``records``: see docs/models/foundation.md for the
commands). The runs are short (6 epochs) so that all of them fit on a shared CPU; the shipped
encoder (40 epochs, ``shifted``) is added as one extra row (``--shipped``) with one pretraining seed.
Prints a table; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ecg_models.foundation import FoundationConfig, FoundationModel, build_foundation
from training.config import resolve_device
from training.foundation_data import DEFAULT_DATA, RUNS, FoundationArrays, load_ptbxl_arrays, mean_ci, safe_auroc
from training.foundation_simulation import DEFAULT_CHECKPOINT, probe_encoder
from training.pretrain_foundation import embed

logger = logging.getLogger(__name__)
FRACTIONS = (0.10, 0.25, 0.50, 1.00)
C_GRID = (0.01, 0.1, 1.0)
VARIANTS = ("shifted", "window", "records")


def encoder_for(variant: str, seed: int, runs: Path) -> FoundationModel | None:
    """The frozen encoder of one row: random init at ``seed``, or a pretraining run's checkpoint."""
    if variant == "random":
        torch.manual_seed(seed)
        return build_foundation(FoundationConfig()).eval()
    path = runs / f"{variant}_s{seed}" / "best.pt"
    if not path.exists():
        return None
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = build_foundation(ckpt["model_config"])
    state = model.state_dict()
    state.update({k: v.float() for k, v in ckpt["model"].items()})
    model.load_state_dict(state)
    return model.eval()


def stratified_subset(y: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``fraction`` of each class (at least 2 per class), sorted."""
    keep = []
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        keep.append(rng.choice(idx, max(2, int(round(fraction * len(idx)))), replace=False))
    return np.sort(np.concatenate(keep))


def probe_curve(
    emb: dict[str, np.ndarray], y: dict[str, np.ndarray], seed: int, fractions: tuple[float, ...] = FRACTIONS
) -> dict[float, tuple[float, float]]:
    """{fraction: (val AUROC, test AUROC)} of the C chosen on val, for one encoder and seed."""
    out = {}
    for fraction in fractions:
        sub = stratified_subset(y["train"], fraction, np.random.default_rng(seed))
        best: tuple[float, float] = (-1.0, float("nan"))
        for c in C_GRID:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))
            clf.fit(emb["train"][sub], y["train"][sub])
            val = safe_auroc(y["val"].astype(float), clf.predict_proba(emb["val"])[:, 1])
            if val > best[0]:
                best = (val, safe_auroc(y["test"].astype(float), clf.predict_proba(emb["test"])[:, 1]))
        out[fraction] = best
    return out


def labelled_splits(arrays: FoundationArrays) -> dict[str, FoundationArrays]:
    """Labelled ECGs of the train folds, fold 9 (val) and fold 10 (test)."""
    return {k: (a := arrays.where(k)).subset(np.flatnonzero(a.label >= 0)) for k in ("train", "val", "test")}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--runs", type=Path, default=RUNS / "foundation_probe", help="folder of pretraining runs")
    parser.add_argument("--device", default="cpu", help="torch device for the embeddings (cpu, cuda)")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--shipped", type=Path, default=DEFAULT_CHECKPOINT, help="add its frozen CPC encoder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    device = resolve_device(args.device)
    arrays, _, sid = load_ptbxl_arrays(args.data)
    splits = labelled_splits(arrays)
    y = {k: v.label.astype(int) for k, v in splits.items()}

    def curve(model: FoundationModel, seed: int) -> dict[float, tuple[float, float]]:
        model = model.to(device)
        emb = {k: embed(model, v.signal, v.lead_mask).astype(np.float64) for k, v in splits.items()}
        return probe_curve(emb, y, seed)

    # results[variant][fraction] = list over seeds of (val, test)
    results: dict[str, dict[float, list[tuple[float, float]]]] = {}
    for variant in ("random", *VARIANTS):
        for seed in range(args.seeds):
            model = encoder_for(variant, seed, args.runs)
            if model is None:
                logger.warning("no run %s seed %d under %s: row skipped", variant, seed, args.runs)
                continue
            for fraction, pair in curve(model, seed).items():
                results.setdefault(variant, {}).setdefault(fraction, []).append(pair)
            logger.info("%s seed %d done", variant, seed)
    if args.shipped and args.shipped.exists():
        for seed in range(args.seeds):  # one encoder, the probe's subsets still vary by seed
            for fraction, pair in curve(probe_encoder(args.shipped), seed).items():
                results.setdefault("shipped (40 epochs, shifted)", {}).setdefault(fraction, []).append(pair)

    summary: dict[str, Any] = {"n_train": len(y["train"]), "n_val": len(y["val"]), "n_test": len(y["test"])}
    summary.update({"seeds": args.seeds, "data_split_id": sid, "rows": {}})
    print("| encoder | labels | n seeds | val AUROC | test AUROC | test minus random | test minus shifted |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant, by_fraction in results.items():
        for fraction, pairs in by_fraction.items():
            val, test = np.array(pairs).T
            row = {"n_seeds": len(pairs), "val": mean_ci(val), "test": mean_ci(test)}
            for ref in ("random", "shifted"):  # paired by seed: same probe subsets (and pretraining seed)
                base = np.array(results.get(ref, {}).get(fraction, []))
                n = min(len(base), len(test))
                row[f"test_minus_{ref}"] = mean_ci(test[:n] - base[:n, 1]) if n else (float("nan"),) * 3
            summary["rows"][f"{variant}@{fraction:g}"] = row
            cells = " | ".join(f"{m:.3f} [{lo:.3f}, {hi:.3f}]" for m, lo, hi in list(row.values())[1:])
            print(f"| {variant} | {fraction:.0%} ({int(round(fraction * len(y['train'])))}) | {len(pairs)} | {cells} |")
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
