"""Train and evaluate the detector's baselines on the detector's split.

``python -m training.detector_baselines --which conv_ae|iforest [--epochs N]``

- ``conv_ae``: the plain convolutional autoencoder of ``ecg_models/baselines.py`` trained on the
  same normals (folds 1–8 + ptb-xl-extra train normals) with the same preprocessing; its
  checkpoint is evaluated by ``training.evaluate_detector --checkpoint``.
- ``iforest``: a feature-based one-class model: measured intervals (HR, PR, QRS, QT, QTc from
  neurokit2) plus the median beat of every lead (12 x 24 points) -> isolation forest fitted on
  the training normals. Threshold on fold 9, metrics on fold 10, printed as the same JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.ensemble import IsolationForest

from ecg_models.baselines import ConvAutoencoder, ConvAutoencoderConfig, config_dict
from training.config import REPO_ROOT, git_sha, resolve_device
from training.data.splits import load_index, split_id, split_records
from training.detector_attributes import ATTRIBUTES, cached_attribute_table
from training.detector_data import (
    DetectorArrays,
    arrays_from_index,
    bootstrap_ci,
    choose_threshold,
    detection_metrics,
    to_tensors,
)

INTERVALS = [a for a in ATTRIBUTES if a not in ("age", "sex")]


def beat_features(data: DetectorArrays) -> np.ndarray:
    """Return (n, 288) median-beat features (12 leads x 24 points); zeros when no beat was found."""
    beats = data.arrays["beats"]  # (n, K, 12, 240)
    valid = data.arrays["beat_valid"]
    out = np.zeros((len(beats), 12, 24), dtype=np.float32)
    for i in range(len(beats)):
        if valid[i].any():
            med = np.median(beats[i][valid[i]], axis=0)  # (12, 240)
            out[i] = med.reshape(12, 24, 10).mean(-1)
    return out.reshape(len(beats), -1)


def feature_matrix(data: DetectorArrays, table: pd.DataFrame, medians: np.ndarray) -> np.ndarray:
    """Return [intervals (imputed with training medians), median beat] per ECG."""
    intervals = table[INTERVALS].to_numpy(dtype=np.float64)
    intervals = np.where(np.isfinite(intervals), intervals, medians)
    scale = np.array([15.0, 30.0, 20.0, 40.0, 30.0])
    return np.hstack([intervals / scale, beat_features(data)])


def run_iforest(data_dir: Path, cache: Path, seed: int) -> dict[str, object]:
    """Fit the isolation forest on training normals; return fold-10 metrics (threshold from fold 9)."""
    splits = split_records(load_index(data_dir))
    train_df = splits["train"][splits["train"]["label"] == "normal"]
    sets = {
        name: (arrays_from_index(df), cached_attribute_table(df, cache))
        for name, df in (("train", train_df), ("val", splits["val"]), ("test", splits["test"]))
    }
    medians = np.nanmedian(sets["train"][1][INTERVALS].to_numpy(dtype=np.float64), axis=0)
    t0 = time.time()
    forest = IsolationForest(n_estimators=300, random_state=seed).fit(feature_matrix(*sets["train"], medians))
    fit_seconds = time.time() - t0
    scores = {name: -forest.score_samples(feature_matrix(*sets[name], medians)) for name in ("val", "test")}
    threshold = choose_threshold(scores["val"], sets["val"][0].labels)
    labels = sets["test"][0].labels
    t0 = time.time()
    forest.score_samples(feature_matrix(*sets["test"], medians))
    out: dict[str, object] = {k: round(v, 4) for k, v in detection_metrics(scores["test"], labels, threshold).items()}
    out.update(
        {
            "n_normal": int((labels == 0).sum()),
            "n_abnormal": int((labels == 1).sum()),
            "n_excluded": int((splits["excluded"]["fold"] == 10).sum()),
            "seconds_per_ecg_model_only": round((time.time() - t0) / len(labels), 5),
            "ci95": bootstrap_ci(scores["test"], labels, threshold),
            "val_auroc": round(detection_metrics(scores["val"], sets["val"][0].labels, np.inf)["auroc"], 4),
            "fit_seconds": round(fit_seconds, 2),
            "model": "isolation_forest(intervals + median beat)",
        }
    )
    return out


def run_conv_ae(
    data_dir: Path, out_path: Path, epochs: int, seed: int, threads: int, device: str = "cpu"
) -> dict[str, object]:
    """Train the conv autoencoder on training normals; keep the epoch with the best fold-9 AUROC."""
    dev = resolve_device(device)
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    splits = split_records(load_index(data_dir))
    train = arrays_from_index(splits["train"][splits["train"]["label"] == "normal"])
    val = arrays_from_index(splits["val"])
    cfg = ConvAutoencoderConfig()
    model = ConvAutoencoder(cfg).to(dev)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01)
    generator = torch.Generator().manual_seed(seed)
    best, history = -1.0, []
    start = time.time()
    for epoch in range(epochs):
        model.train()
        t0 = time.time()
        order = torch.randperm(len(train), generator=generator).numpy()
        for b in range(len(train) // 32):
            batch = to_tensors(train.arrays, np.sort(order[b * 32 : (b + 1) * 32]))
            record, _, _, lead_valid, sample_valid, _ = (t.to(dev) for t in batch)
            loss = model.loss(record, lead_valid, sample_valid)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_scores = model(*(t.to(dev) for t in to_tensors(val.arrays, slice(None))))[0].cpu().numpy()
        auroc = detection_metrics(val_scores, val.labels, np.inf)["auroc"]
        history.append({"epoch": epoch, "loss": float(loss), "val_auroc": auroc, "epoch_seconds": time.time() - t0})
        print(json.dumps(history[-1]))
        if auroc > best:
            best = auroc
            torch.save(
                {
                    "model_kind": "conv_autoencoder",
                    "model": {k: v.cpu() for k, v in model.state_dict().items()},
                    "model_config": config_dict(cfg),
                    "train_config": {"epochs": epochs, "seed": seed, "lr": 1e-3, "batch_size": 32},
                    "epoch": epoch,
                    "best_metric": {"val_auroc": auroc},
                    "optimizer": optimizer.state_dict(),
                    "data_split_id": split_id(splits),
                    "git_sha": git_sha(),
                },
                out_path,
            )
    return {
        "val_auroc": best,
        "train_seconds": time.time() - start,
        "seconds_per_epoch": float(np.mean([h["epoch_seconds"] for h in history])),
        "n_params": sum(p.numel() for p in model.parameters()),
        "checkpoint": str(out_path),
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Parse flags and run one baseline; print its JSON summary last."""
    parser = argparse.ArgumentParser(description="Detector baselines")
    parser.add_argument("--which", choices=("conv_ae", "iforest"), required=True)
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="torch device of the conv autoencoder (cpu, cuda, cuda:N)")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "training" / "runs" / "conv_ae.pt")
    parser.add_argument(
        "--attribute-cache", type=Path, default=REPO_ROOT / "training" / "runs" / "detector_attributes.csv"
    )
    args = parser.parse_args(argv)
    if args.which == "iforest":
        result = run_iforest(args.data, args.attribute_cache, args.seed)
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        result = run_conv_ae(args.data, args.out, args.epochs, args.seed, args.threads, args.device)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
