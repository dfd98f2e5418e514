"""Intended-use checks: paced rhythm, under 18, electrode reversal (on bundled PTB-XL samples)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.clinical.beats import beats_analyse
from inference.clinical.intended_use import detect_pacing_spikes, intended_use_findings, simulate_reversal
from inference.preprocessing import LEADS_12

SAMPLES = Path(__file__).resolve().parents[3] / "samples" / "ptbxl"
pytestmark = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")


def _sample(ecg_id: int) -> np.ndarray:
    from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

    index = load_ptbxl_index(SAMPLES)
    row = index[index["ecg_id"] == ecg_id].iloc[0]
    return load_ptbxl_record(SAMPLES, row).signal.astype(np.float64)


def _codes(signal: np.ndarray, age: float | None = None) -> set[str]:
    return {f.code for f in intended_use_findings(signal, 500.0, LEADS_12, age_years=age)}


def _with_spikes(signal: np.ndarray, amplitude_mv: float = 1.0) -> np.ndarray:
    """Add a 2 ms pacing spike every 0.8 s, seen in every lead (a fixed electrode pattern)."""
    out = signal.copy()
    pattern = np.array([0.6, 1.0, 0.4, -0.8, 0.1, 0.7, -0.5, -0.3, 0.4, 0.8, 1.0, 0.9]) * amplitude_mv
    for start in range(200, out.shape[1] - 5, 400):
        out[:, start] += pattern
    return out


def test_it_detects_a_left_right_arm_reversal_of_a_normal_sample() -> None:
    swapped = simulate_reversal(_sample(9), "LA_RA")
    findings = intended_use_findings(swapped, 500.0, LEADS_12, age_years=60.0)
    limb = [f for f in findings if f.code == "LIMB_REVERSAL_LA_RA"]
    assert limb and limb[0].category == "technical" and limb[0].snomed == "251139008"
    assert limb[0].evidence["c_I_V6"] < 0


@pytest.mark.parametrize("ecg_id", [9, 38, 57, 63, 65, 116, 128, 131])
def test_it_raises_no_alert_on_the_unmodified_samples(ecg_id: int) -> None:
    assert _codes(_sample(ecg_id), age=60.0) == set()


def test_it_reports_a_paced_rhythm_from_synthetic_spikes_with_count_and_rate() -> None:
    signal = _with_spikes(_sample(57))
    findings = [f for f in intended_use_findings(signal, 500.0, LEADS_12, age_years=70.0) if f.code == "PACE"]
    assert findings and findings[0].snomed == "10370003" and findings[0].category == "intended-use"
    assert findings[0].evidence["pacing_spikes"] == 12
    assert findings[0].evidence["spikes_per_min"] == pytest.approx(72.0)


def test_it_finds_no_spikes_in_a_normal_sample_or_at_a_low_sampling_rate() -> None:
    spikes = detect_pacing_spikes(_sample(9), 500.0)
    assert spikes is not None and spikes.count == 0
    assert detect_pacing_spikes(_with_spikes(_sample(9)), 250.0) is None


def test_it_marks_a_twelve_year_old_as_outside_the_intended_use() -> None:
    findings = intended_use_findings(_sample(9), 500.0, LEADS_12, age_years=12.0)
    pediatric = [f for f in findings if f.code == "PEDIATRIC"]
    assert pediatric and pediatric[0].category == "intended-use"
    assert pediatric[0].text.startswith("Patient under 18 years")
    assert pediatric[0].evidence["age_years"] == 12.0


def test_it_says_nothing_about_age_when_it_is_unknown_or_adult() -> None:
    beats = beats_analyse(_sample(9), 500.0, LEADS_12)
    for age in (None, 18.0, float("nan")):
        codes = {f.code for f in intended_use_findings(_sample(9), 500.0, LEADS_12, age_years=age, beats=beats)}
        assert "PEDIATRIC" not in codes


def test_it_skips_the_limb_check_without_limb_leads_and_never_raises() -> None:
    swapped = simulate_reversal(_sample(9), "LA_RA")
    swapped[:6] = np.nan
    assert not any(c.startswith("LIMB") for c in _codes(swapped))
    chest = _sample(9)[6:]
    assert intended_use_findings(chest, 500.0, LEADS_12[6:], age_years=None) == []
    assert intended_use_findings(np.zeros((3, 7)), 500.0, LEADS_12, age_years=10.0)[0].code == "PEDIATRIC"
    assert intended_use_findings(np.full((12, 5000), np.nan), 500.0, LEADS_12, age_years=None) == []
    assert intended_use_findings(_sample(9), float("nan"), LEADS_12, age_years=None) == []


def test_it_detects_an_adjacent_precordial_swap() -> None:
    codes = _codes(simulate_reversal(_sample(57), "V3_V4"))
    assert any(c.startswith("PRECORDIAL_REVERSAL") for c in codes)
