"""Split rule shared by every model: PTB-XL folds 1–8 train, fold 9 validation, fold 10 test.

ptb-xl-extra records have no ``strat_fold``; their ``source_split`` follows PTB-XL's folds
(train = 1–8, val = 9, test = 10) and patients are unknown, so only ``source_split == "train"``
records may be used, and only for training: a val/test extra record could share a patient with a
subset fold 9/10 record. Records without a label are reported in ``excluded``, never dropped
silently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from training.data.ptbxl import discover_ptbxl_roots, load_ptbxl_index

TRAIN_FOLDS = (1, 2, 3, 4, 5, 6, 7, 8)
VAL_FOLD = 9
TEST_FOLD = 10


def _assign(row: pd.Series, train_folds: tuple[int, ...], val_fold: int, test_fold: int) -> tuple[str, str]:
    """Return (split, reason) for one index row; split is train/val/test/excluded."""
    fold = row.get("fold")
    source_split = row.get("source_split")
    if fold is not None and not pd.isna(fold):
        fold = int(fold)
        if fold in train_folds:
            return "train", ""
        if fold == val_fold:
            return "val", ""
        if fold == test_fold:
            return "test", ""
        return "excluded", f"fold {fold} outside train/val/test folds"
    if source_split == "train":
        return "train", ""
    if source_split in ("val", "test"):
        return "excluded", f"training-only folder, source_split={source_split} (possible patient overlap)"
    return "excluded", "no fold and no source_split"


def split_records(
    index_df: pd.DataFrame,
    *,
    train_folds: Iterable[int] = TRAIN_FOLDS,
    val_fold: int = VAL_FOLD,
    test_fold: int = TEST_FOLD,
    keep_unlabelled_in_train: bool = False,
) -> dict[str, pd.DataFrame]:
    """Split an index (one or several concatenated PTB-XL indexes) into train/val/test/excluded.

    Returns a dict with keys ``train``, ``val``, ``test`` and ``excluded``; ``excluded`` has an
    extra ``reason`` column. Records with ``label is None`` go to ``excluded`` (reason "no
    diagnostic label") unless ``keep_unlabelled_in_train`` is set and they fall in train (for
    self-supervised use); val/test never hold unlabelled records.
    Raises ValueError if ``val_fold``/``test_fold`` overlap the train folds or each other.
    """
    folds = tuple(int(f) for f in train_folds)
    if val_fold in folds or test_fold in folds or val_fold == test_fold:
        raise ValueError(f"overlapping folds: train={folds}, val={val_fold}, test={test_fold}")
    splits: list[str] = []
    reasons: list[str] = []
    for _, row in index_df.iterrows():
        split, reason = _assign(row, folds, val_fold, test_fold)
        if split != "excluded" and row["label"] is None and not (split == "train" and keep_unlabelled_in_train):
            split, reason = "excluded", "no diagnostic label"
        splits.append(split)
        reasons.append(reason)
    df = index_df.assign(split=splits, reason=reasons)
    out = {
        name: df[df["split"] == name].drop(columns=["reason"]).reset_index(drop=True)
        for name in ("train", "val", "test")
    }
    out["excluded"] = df[df["split"] == "excluded"].reset_index(drop=True)
    return out


def load_index(data_dir: Path) -> pd.DataFrame:
    """Concatenate the indexes of every PTB-XL-layout folder under ``data_dir``.

    Raises FileNotFoundError if there is none.
    """
    roots = discover_ptbxl_roots(Path(data_dir))
    if not roots:
        raise FileNotFoundError(f"no PTB-XL-layout folder (ptbxl_database.csv) under {data_dir}")
    return pd.concat([load_ptbxl_index(r) for r in roots], ignore_index=True)


def split_id(splits: dict[str, pd.DataFrame]) -> str:
    """Return a short stable hash of the record ids in train/val/test (stored in checkpoints)."""
    h = hashlib.sha256()
    for name in ("train", "val", "test"):
        h.update(name.encode())
        h.update(",".join(sorted(map(str, splits[name]["record_id"]))).encode())
    return h.hexdigest()[:16]


def excluded_report(splits: dict[str, pd.DataFrame]) -> dict[str, int]:
    """Return {reason: count} for the excluded records."""
    return {str(k): int(v) for k, v in splits["excluded"]["reason"].value_counts().items()}
