"""Tests of the PTB-XL loader on the committed samples and, when present, the shared subset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.ptbxl import LEADS_12, discover_ptbxl_roots, load_ptbxl_index, load_ptbxl_record
from training.data.splits import excluded_report, split_id, split_records

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
SHARED = REPO_ROOT.parent / "shared" / "data"
needs_samples = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")
needs_shared = pytest.mark.skipif(
    not (SHARED / "ptb-xl-subset" / "ptbxl_database.csv").exists(), reason="../shared/data/ptb-xl-subset not present"
)


@needs_samples
def test_it_indexes_the_samples_with_labels_and_folds() -> None:
    index = load_ptbxl_index(SAMPLES)
    row = index.set_index("ecg_id").loc[9]
    assert row["label"] == "normal"
    assert row["superclasses"] == frozenset({"NORM"})
    assert row["fold"] == 10
    assert index.set_index("ecg_id").loc[63, "label"] == "abnormal"


@needs_samples
@pytest.mark.parametrize("rate", [500, 100])
def test_it_loads_a_record_in_lead_order_and_mv(rate: int) -> None:
    index = load_ptbxl_index(SAMPLES)
    record = load_ptbxl_record(SAMPLES, index.iloc[0], sampling_rate_hz=rate)
    assert record.record_id == "ptbxl:9"
    assert record.signal.shape == (12, 10 * rate)
    assert record.signal.dtype == np.float32
    assert record.sample_rate_hz == rate
    assert not record.standardized
    assert record.sex in ("male", "female")
    assert 0 < float(np.abs(record.signal).max()) < 10  # millivolts, not raw ADC units


@needs_samples
def test_it_rejects_unknown_rates() -> None:
    index = load_ptbxl_index(SAMPLES)
    with pytest.raises(ValueError, match="250"):
        load_ptbxl_record(SAMPLES, index.iloc[0], sampling_rate_hz=250)


def test_it_discovers_nothing_in_a_missing_folder(tmp_path: Path) -> None:
    assert discover_ptbxl_roots(tmp_path / "absent") == []


@needs_shared
def test_it_loads_the_subset_counts_from_its_readme() -> None:
    index = load_ptbxl_index(SHARED / "ptb-xl-subset")
    assert len(index) == 500
    counts = index["label"].value_counts(dropna=False)
    assert counts["normal"] == 290
    assert counts["abnormal"] == 198
    assert index["label"].isna().sum() == 12
    assert (index["fold"] == 10).sum() == 66


@needs_shared
def test_it_marks_extra_records_standardized_and_training_only() -> None:
    roots = discover_ptbxl_roots(SHARED)
    assert SHARED / "ptb-xl-extra" in roots
    extra = load_ptbxl_index(SHARED / "ptb-xl-extra")
    assert extra["standardized"].all()
    row = extra[extra["label"] == "normal"].iloc[0]
    record = load_ptbxl_record(SHARED / "ptb-xl-extra", row)
    assert record.standardized
    assert record.source_split in ("train", "val", "test")
    np.testing.assert_allclose(record.signal.std(axis=1), 1.0, atol=0.01)
    with pytest.raises(ValueError, match="100 Hz"):
        load_ptbxl_record(SHARED / "ptb-xl-extra", row, sampling_rate_hz=100)
    assert list(LEADS_12) == ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


@needs_shared
def test_it_splits_by_fold_and_keeps_extra_val_test_out() -> None:
    import pandas as pd

    index = pd.concat([load_ptbxl_index(r) for r in discover_ptbxl_roots(SHARED)], ignore_index=True)
    splits = split_records(index)
    assert set(splits["val"]["fold"]) == {9}
    assert set(splits["test"]["fold"]) == {10}
    assert set(splits["train"]["source_split"].dropna()) == {"train"}
    assert len(splits["test"]) == 64  # 66 fold-10 records minus 2 without a diagnostic label
    report = excluded_report(splits)
    assert report["no diagnostic label"] == 215
    assert sum(report.values()) == len(splits["excluded"])
    assert sum(len(v) for v in splits.values()) == len(index)
    assert split_id(splits) == split_id(split_records(index))
