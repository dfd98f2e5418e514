"""Arrays, batching, scoring and metrics shared by the detector's training and evaluation scripts."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import precision_recall_curve, roc_auc_score

from inference.preprocessing import DetectorInputs, detector_inputs, stack_detector_inputs
from training.data.challenge import load_challenge_records
from training.data.ptbxl import EcgRecord, load_ptbxl_record

ARRAY_KEYS = ("record", "beats", "beat_valid", "lead_valid", "sample_valid", "r_track")


@dataclass
class DetectorArrays:
    """Preprocessed inputs of many ECGs plus their ids, labels and quality flags."""

    arrays: dict[str, np.ndarray]
    record_ids: list[str]
    labels: np.ndarray  # 1 = abnormal, 0 = normal, -1 = unlabelled
    flags: list[tuple[str, ...]]

    def __len__(self) -> int:
        return len(self.record_ids)

    def subset(self, idx: np.ndarray) -> DetectorArrays:
        """Return the rows ``idx``."""
        return DetectorArrays(
            {k: v[idx] for k, v in self.arrays.items()},
            [self.record_ids[i] for i in idx],
            self.labels[idx],
            [self.flags[i] for i in idx],
        )


def _label_code(label: str | None) -> int:
    return {"normal": 0, "abnormal": 1}.get(label or "", -1)


def arrays_from_records(records: Iterator[EcgRecord] | list[EcgRecord]) -> tuple[DetectorArrays, list[tuple[str, str]]]:
    """Preprocess records; return the arrays and (record_id, reason) for records that were refused."""
    items: list[DetectorInputs] = []
    ids: list[str] = []
    labels: list[int] = []
    refused: list[tuple[str, str]] = []
    for rec in records:
        try:
            items.append(detector_inputs(rec.signal, rec.sample_rate_hz))
        except ValueError as exc:
            refused.append((rec.record_id, str(exc)))
            continue
        ids.append(rec.record_id)
        labels.append(_label_code(rec.label))
    arrays = stack_detector_inputs(items) if items else {}
    return DetectorArrays(arrays, ids, np.asarray(labels, dtype=np.int64), [i.flags for i in items]), refused


def arrays_from_index(index_df: pd.DataFrame) -> DetectorArrays:
    """Preprocess every record of a PTB-XL index (rows carry their own ``root``)."""
    records = (load_ptbxl_record(Path(row["root"]), row) for _, row in index_df.iterrows())
    arrays, refused = arrays_from_records(records)
    if refused:
        raise ValueError(f"PTB-XL records refused by preprocessing: {refused[:5]}")
    return arrays


def arrays_from_challenge(root: Path) -> tuple[DetectorArrays, list[tuple[str, str]]]:
    """Preprocess every record of a Challenge WFDB directory."""
    return arrays_from_records(load_challenge_records(root))


def to_tensors(arrays: dict[str, np.ndarray], idx: np.ndarray | slice) -> list[torch.Tensor]:
    """Return the model's forward arguments for rows ``idx`` in signature order."""
    return [torch.from_numpy(np.ascontiguousarray(arrays[k][idx])) for k in ARRAY_KEYS]


@torch.no_grad()
def score_arrays(
    model: torch.nn.Module, data: DetectorArrays, batch_size: int = 32, keep_maps: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Return (scores (n,), attribute predictions (n, 7), maps (n, 12, L) or None) in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    scores, attrs, maps = [], [], []
    for start in range(0, len(data), batch_size):
        sl = slice(start, start + batch_size)
        score, amap, attr = model(*(t.to(device) for t in to_tensors(data.arrays, sl)))
        scores.append(score.cpu().numpy())
        attrs.append(attr.cpu().numpy())
        if keep_maps:
            maps.append(amap.cpu().numpy().astype(np.float32))
    return np.concatenate(scores), np.concatenate(attrs), (np.concatenate(maps) if keep_maps else None)


def attribute_deviation(pred: np.ndarray, targets: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Return the mean squared deviation between predicted and measured attributes per ECG.

    Sex (column 1) is compared as probability vs {0, 1}; missing targets are skipped, and an ECG
    with no valid attribute gets 0 (no evidence either way).
    """
    p = pred.copy()
    p[:, 1] = 1.0 / (1.0 + np.exp(-p[:, 1]))
    sq = (p - targets) ** 2 * valid
    return sq.sum(1) / np.maximum(valid.sum(1), 1)


def combine_scores(
    restoration: np.ndarray, deviation: np.ndarray, stats: dict[str, float], weight: float
) -> np.ndarray:
    """Return z(restoration) + weight * z(deviation), z from validation-normal statistics."""
    zr = (restoration - stats["rest_mean"]) / stats["rest_std"]
    zd = (deviation - stats["dev_mean"]) / stats["dev_std"]
    return zr + weight * zd


# --- metrics ----------------------------------------------------------------------------------


def choose_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the threshold maximising Youden's J (sensitivity + specificity - 1)."""
    best, best_j = float(np.median(scores)), -1.0
    for t in np.unique(scores):
        pred = scores >= t
        sens = pred[labels == 1].mean()
        spec = (~pred[labels == 0]).mean()
        if sens + spec - 1 > best_j:
            best, best_j = float(t), float(sens + spec - 1)
    return best


def detection_metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Return AUROC, F1, sensitivity, specificity and precision at 90% recall (labels 1 = abnormal)."""
    pred = scores >= threshold
    tp = int((pred & (labels == 1)).sum())
    fp = int((pred & (labels == 0)).sum())
    fn = int((~pred & (labels == 1)).sum())
    tn = int((~pred & (labels == 0)).sum())
    prec, rec, _ = precision_recall_curve(labels, scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "sensitivity": tp / max(tp + fn, 1),
        "specificity": tn / max(tn + fp, 1),
        "precision_at_recall_90": float(prec[rec >= 0.9].max()),
    }


def bootstrap_ci(
    scores: np.ndarray, labels: np.ndarray, threshold: float, n: int = 1000, seed: int = 0
) -> dict[str, list[float]]:
    """Return 95% percentile-bootstrap intervals for each metric (resampling ECGs)."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n):
        idx = rng.integers(0, len(labels), len(labels))
        if labels[idx].min() == labels[idx].max():
            continue
        for k, v in detection_metrics(scores[idx], labels[idx], threshold).items():
            draws.setdefault(k, []).append(v)
    return {
        k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)] for k, v in draws.items()
    }
