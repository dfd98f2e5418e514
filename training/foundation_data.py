"""Arrays, config handling and metrics shared by the foundation model's training and evaluation.

Every signal goes through ``inference.preprocessing.foundation_inputs`` (the serving function).
Preprocessed arrays are cached under ``training/runs/`` (gitignored), keyed by the data folder.

Label sources per record (``FoundationArrays`` masks):
- ``label`` (normal/abnormal) and ``superclass`` targets: every labelled record, including the
  ptb-xl-extra ``normal_list`` records (about 96% exact, see its README);
- ``statements`` and report text: only records whose full SCP codes are known (PTB-XL folders
  without ``label_source``, and ptb-xl-extra ``full_table`` records): a ``normal_list`` record
  only says NORM, so its rhythm and form statements are unknown.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from ecg_models.foundation import SUPERCLASSES
from inference.preprocessing import LEADS_12, foundation_inputs
from training.data.challenge import load_challenge_records
from training.data.ptbxl import EcgRecord, load_ptbxl_record
from training.data.splits import load_index, split_records
from training.detector_data import bootstrap_ci
from training.foundation_text import ReportBuilder

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / ".." / "shared" / "data"
RUNS = REPO_ROOT / "training" / "runs"

# The lead subsets reported for any-lead input (names -> LEADS_12 indices).
LEAD_SUBSETS: dict[str, tuple[int, ...]] = {
    "I": (0,),
    "I+II": (0, 1),
    "limb6": (0, 1, 2, 3, 4, 5),
    "V1-V6": (6, 7, 8, 9, 10, 11),
    "all12": tuple(range(12)),
}


@dataclass
class FoundationArrays:
    """Preprocessed inputs and targets of many ECGs."""

    signal: np.ndarray  # float32 (N, 12, 1000)
    lead_mask: np.ndarray  # bool (N, 12)
    record_ids: np.ndarray  # str (N,)
    split: np.ndarray  # str (N,): train / val / test / excluded
    label: np.ndarray  # int64 (N,): 1 abnormal, 0 normal, -1 unknown
    superclass: np.ndarray  # float32 (N, 5)
    statements: np.ndarray  # float32 (N, S) multi-hot over ``statement_codes``
    full_codes: np.ndarray  # bool (N,): statements and text are known
    texts: np.ndarray  # str (N,) target report ("" if unknown)
    codes: np.ndarray  # object (N,): tuple of SCP codes
    statement_codes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.record_ids)

    def subset(self, idx: np.ndarray) -> FoundationArrays:
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return FoundationArrays(
            **{k: (v if k == "statement_codes" else v[idx]) for k, v in fields.items()}  # type: ignore[arg-type]
        )

    def where(self, split: str, labelled: bool = True) -> FoundationArrays:
        keep = self.split == split
        if labelled:
            keep &= self.label >= 0
        return self.subset(np.flatnonzero(keep))


def _full_codes(row: Any) -> bool:
    source = row.get("label_source") if hasattr(row, "get") else None
    return not (isinstance(source, str) and source != "full_table")


def _targets(
    rec: EcgRecord, builder: ReportBuilder, codes: tuple[str, ...]
) -> tuple[int, np.ndarray, np.ndarray, tuple[str, ...]]:
    label = {"normal": 0, "abnormal": 1}.get(rec.label or "", -1)
    sup = np.array([c in rec.superclasses for c in SUPERCLASSES], dtype=np.float32)
    rec_codes = tuple(c for c in rec.scp_codes if c in builder.phrase)
    st = np.array([c in rec_codes for c in codes], dtype=np.float32)
    return label, sup, st, rec_codes


def build_arrays(index: pd.DataFrame, builder: ReportBuilder) -> tuple[FoundationArrays, list[tuple[str, str]]]:
    """Preprocess every row of a PTB-XL index (with a ``split`` column); return arrays and refusals."""
    codes = builder.codes
    sig, mask, ids, split, label, sup, st, full, texts, rcodes = ([] for _ in range(10))
    refused: list[tuple[str, str]] = []
    for _, row in index.iterrows():
        rate = 500 if isinstance(row.get("filename_hr"), str) else 100
        rec = load_ptbxl_record(Path(row["root"]), row, sampling_rate_hz=rate)
        try:
            inp = foundation_inputs(rec.signal, rec.sample_rate_hz, LEADS_12)
        except ValueError as exc:
            refused.append((rec.record_id, str(exc)))
            continue
        lab, s, t, c = _targets(rec, builder, codes)
        is_full = _full_codes(row) and bool(c)
        sig.append(inp.signal)
        mask.append(inp.lead_mask)
        ids.append(rec.record_id)
        split.append(row["split"])
        label.append(lab)
        sup.append(s)
        st.append(t)
        full.append(is_full)
        texts.append(builder.build(c) if is_full else "")
        rcodes.append(c)
    arrays = FoundationArrays(
        signal=np.stack(sig),
        lead_mask=np.stack(mask),
        record_ids=np.asarray(ids),
        split=np.asarray(split),
        label=np.asarray(label, dtype=np.int64),
        superclass=np.stack(sup),
        statements=np.stack(st),
        full_codes=np.asarray(full, dtype=bool),
        texts=np.asarray(texts),
        codes=np.asarray(rcodes + [()], dtype=object)[:-1],
        statement_codes=codes,
    )
    return arrays, refused


def load_ptbxl_arrays(data_dir: Path, cache_dir: Path = RUNS) -> tuple[FoundationArrays, ReportBuilder, str]:
    """Return (arrays of every usable record under ``data_dir``, the report builder, split id).

    Split rule: ``training.data.splits.split_records`` with unlabelled train records kept (for
    pretraining); ptb-xl-extra val/test records are excluded. Cached as ``.npz`` in ``cache_dir``.
    """
    from training.data.splits import split_id

    index = load_index(Path(data_dir))
    splits = split_records(index, keep_unlabelled_in_train=True)
    sid = split_id(splits)
    frame = pd.concat([splits[k].assign(split=k) for k in ("train", "val", "test")], ignore_index=True)
    builder = ReportBuilder.from_root(Path(frame["root"].iloc[0]))
    key = hashlib.sha256((str(Path(data_dir).resolve()) + sid + "v1").encode()).hexdigest()[:12]
    cache = Path(cache_dir) / f"foundation_cache_{key}.npz"
    if cache.exists():
        z = np.load(cache, allow_pickle=True)
        arrays = FoundationArrays(
            **{k: z[k] for k in z.files if k != "statement_codes"},
            statement_codes=tuple(str(c) for c in z["statement_codes"]),
        )
        return arrays, builder, sid
    arrays, refused = build_arrays(frame, builder)
    if refused:
        logger.warning("refused by preprocessing: %s", refused[:10])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **{f.name: getattr(arrays, f.name) for f in dataclasses.fields(arrays)})
    return arrays, builder, sid


def load_challenge_arrays(root: Path, builder: ReportBuilder) -> tuple[FoundationArrays, list[tuple[str, str]]]:
    """Preprocess a Challenge WFDB directory: every record is a test record (no superclasses)."""
    sig, mask, ids, label = [], [], [], []
    refused: list[tuple[str, str]] = []
    for rec in load_challenge_records(root):
        try:
            inp = foundation_inputs(rec.signal, rec.sample_rate_hz, LEADS_12)
        except ValueError as exc:
            refused.append((rec.record_id, str(exc)))
            continue
        sig.append(inp.signal)
        mask.append(inp.lead_mask)
        ids.append(rec.record_id)
        label.append({"normal": 0, "abnormal": 1}.get(rec.label or "", -1))
    n, s = len(ids), len(builder.codes)
    arrays = FoundationArrays(
        signal=np.stack(sig) if sig else np.zeros((0, 12, 1000), np.float32),
        lead_mask=np.stack(mask) if mask else np.zeros((0, 12), bool),
        record_ids=np.asarray(ids),
        split=np.asarray(["test"] * n),
        label=np.asarray(label, dtype=np.int64),
        superclass=np.full((n, 5), np.nan, np.float32),
        statements=np.full((n, s), np.nan, np.float32),
        full_codes=np.zeros(n, bool),
        texts=np.asarray([""] * n),
        codes=np.asarray([()] * n + [()], dtype=object)[:-1],
        statement_codes=builder.codes,
    )
    return arrays, refused


def subset_mask(mask: np.ndarray, subset: str) -> np.ndarray:
    """Restrict lead masks (N, 12) to a named subset of LEAD_SUBSETS."""
    keep = np.zeros(12, dtype=bool)
    keep[list(LEAD_SUBSETS[subset])] = True
    return mask & keep[None, :]


# --- metrics ----------------------------------------------------------------------------------


def mean_ci(values: np.ndarray) -> tuple[float, float, float]:
    """Mean and 95% t-interval of per-seed values (mean, lo, hi), rounded to 4 places; one value has no width."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return (float("nan"),) * 3
    m = float(v.mean())
    if len(v) < 2:
        return round(m, 4), round(m, 4), round(m, 4)
    half = float(stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return round(m, 4), round(m - half, 4), round(m + half, 4)


def safe_auroc(y: np.ndarray, s: np.ndarray) -> float:
    """AUROC, or NaN when only one class is present."""
    ok = ~np.isnan(y)
    y, s = y[ok], s[ok]
    if len(y) == 0 or y.min() == y.max():
        return float("nan")
    return float(roc_auc_score(y, s))


def macro_auroc(y: np.ndarray, s: np.ndarray, min_pos: int = 1) -> tuple[float, list[int]]:
    """Macro AUROC over columns with at least ``min_pos`` positives and one negative; returns columns used."""
    cols = [j for j in range(y.shape[1]) if np.nansum(y[:, j]) >= min_pos and np.nansum(1 - y[:, j]) >= 1]
    vals = [safe_auroc(y[:, j], s[:, j]) for j in cols]
    return (float(np.nanmean(vals)) if vals else float("nan")), cols


def bootstrap_auroc(y: np.ndarray, s: np.ndarray, n: int = 500, seed: int = 0) -> list[float]:
    """95% percentile-bootstrap interval of AUROC (1-D) or macro AUROC (2-D), resampling ECGs."""
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        v = safe_auroc(y[idx], s[idx]) if y.ndim == 1 else macro_auroc(y[idx], s[idx])[0]
        if not np.isnan(v):
            vals.append(v)
    if not vals:
        return [float("nan"), float("nan")]
    return [round(float(np.percentile(vals, 2.5)), 4), round(float(np.percentile(vals, 97.5)), 4)]


def detection_ci(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, list[float]]:
    """The detector's bootstrap intervals (AUROC, F1, sensitivity, ...) for normal/abnormal."""
    return bootstrap_ci(scores, labels, threshold, n=500)
