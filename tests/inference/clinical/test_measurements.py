"""Global measurements on synthetic ECGs with known intervals (inference.clinical.measurements)."""

from __future__ import annotations

import numpy as np
import pytest

from inference.clinical.measurements import measure_ecg
from training.synthetic_ecg import synthesize

# IEC 60601-2-25 / CSE limits on the mean difference from the reference (ms).
# PR: 15 ms per case (the IEC SD limit): the P onset is read where the P magnitude is back within
# 15% of its height (noise-robust on real ECGs, far fewer false PR > 200 ms), ~10 ms after the
# exact support of the smooth synthetic P pulse; the mean over the synthetic set stays within 10.
TOLERANCE = {"pr_ms": 15.0, "qrs_ms": 10.0, "qt_ms": 25.0}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"heart_rate": 52, "pr_ms": 220, "qt_ms": 430},
        {"heart_rate": 95, "qrs_ms": 100, "qt_ms": 340, "rate_hz": 1000},
        {"conduction": "rbbb", "qrs_ms": 140},
        {"noise_mv": 0.015, "wander_mv": 0.2},
    ],
)
def test_it_measures_intervals_within_tolerance(options: dict) -> None:
    ecg = synthesize(**options)
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    for name, tol in TOLERANCE.items():
        assert abs(getattr(m, name) - ecg.truth[name]) <= tol, (name, getattr(m, name), ecg.truth[name])
    assert abs(m.heart_rate_bpm - ecg.truth["heart_rate_bpm"]) <= 2.0
    assert abs(m.qrs_axis_deg - ecg.truth["qrs_axis_deg"]) <= 10.0
    assert m.qtc_ms is not None and m.p_wave_present


def test_it_leaves_the_axis_out_with_a_reason_when_limb_leads_are_missing() -> None:
    ecg = synthesize(missing=("I", "II", "III", "aVR", "aVL", "aVF"))
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    assert m.qrs_axis_deg is None and "limb" in m.not_measured["qrs_axis_deg"]
    assert m.qrs_ms is not None  # the precordial leads still give the intervals


def test_it_invents_nothing_on_a_two_second_signal() -> None:
    ecg = synthesize(seconds=2.0)
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    assert m.heart_rate_bpm is None and m.qrs_ms is None and m.qt_ms is None and m.pr_ms is None
    assert "too short" in m.not_measured["qrs_ms"]


def test_it_lists_an_all_nan_lead_as_unusable() -> None:
    ecg = synthesize(missing=("aVL",))
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    assert "aVL" in m.unusable_leads and "aVL" not in m.leads


def test_it_finds_low_p_wave_fraction_in_atrial_fibrillation() -> None:
    ecg = synthesize(rhythm="af", heart_rate=95, seed=5)
    m = measure_ecg(ecg.signal, ecg.rate_hz, ecg.leads)
    assert not m.p_wave_present and (m.p_wave_fraction or 0.0) < 0.5
    assert m.rhythm_regular is False


def test_it_never_raises_on_garbage() -> None:
    for signal in (np.full((12, 5000), np.nan), np.zeros((12, 5000)), np.random.default_rng(0).normal(size=(12, 5000))):
        m = measure_ecg(signal, 500, synthesize().leads)
        assert m.qt_ms is None or m.qt_ms > 0
