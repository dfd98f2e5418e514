"""Tests of the Challenge WFDB loader on a fixture built from a committed PTB-XL sample record."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data.challenge import is_challenge_dir, load_challenge_records
from training.data.ptbxl import LEADS_12, load_ptbxl_index, load_ptbxl_record

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
pytestmark = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")


def write_challenge_fixture(root: Path) -> np.ndarray:
    """Write two Challenge-style records (one normal, one abnormal, leads shuffled); return the signal."""
    import wfdb

    index = load_ptbxl_index(SAMPLES)
    signal = load_ptbxl_record(SAMPLES, index.iloc[0]).signal
    order = list(reversed(range(12)))  # Challenge files need not follow LEADS_12 order
    names = [LEADS_12[i].upper() for i in order]
    for name, dx, sex in (("A0001", "426783006", "Male"), ("A0002", "426783006,164889003", "Female")):
        wfdb.wrsamp(
            name,
            fs=500,
            units=["mV"] * 12,
            sig_name=names,
            p_signal=signal[order].T.astype(np.float64),
            fmt=["16"] * 12,
            adc_gain=[1000.0] * 12,
            baseline=[0] * 12,
            comments=["Age: 61", f"Sex: {sex}", f"Dx: {dx}", "Rx: Unknown"],
            write_dir=str(root),
        )
    return signal


def test_it_loads_challenge_records_in_lead_order_with_labels(tmp_path: Path) -> None:
    signal = write_challenge_fixture(tmp_path)
    records = list(load_challenge_records(tmp_path))
    assert [r.record_id for r in records] == ["challenge:A0001", "challenge:A0002"]
    first, second = records
    np.testing.assert_allclose(first.signal, signal, atol=1e-3)
    assert first.label == "normal" and second.label == "abnormal"
    assert first.sex == "male" and second.sex == "female"
    assert first.age_years == 61.0
    assert first.sample_rate_hz == 500
    assert first.strat_fold is None


def test_it_recognises_a_challenge_directory(tmp_path: Path) -> None:
    write_challenge_fixture(tmp_path)
    assert is_challenge_dir(tmp_path)
    assert not is_challenge_dir(SAMPLES)
