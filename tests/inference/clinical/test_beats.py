"""Beat detection, classification and median beats (inference.clinical.beats)."""

from __future__ import annotations

import numpy as np

from inference.clinical.beats import CLASS_NORMAL, CLASS_SUPRA, CLASS_VENTRICULAR, MEDIAN_SAMPLES, beats_analyse
from training.synthetic_ecg import synthesize


def test_it_finds_every_beat_and_resamples_to_500_hz() -> None:
    ecg = synthesize(rate_hz=250, heart_rate=75)
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    assert beats.rate_hz == 500 and beats.signal.shape == (12, 5000)
    assert abs(len(beats.r_peaks) - int(ecg.truth["beats"])) <= 1
    assert beats.median.shape == (12, MEDIAN_SAMPLES)
    assert np.all(beats.beat_class[1:-1] == CLASS_NORMAL)


def test_it_classifies_premature_narrow_and_wide_beats() -> None:
    ecg = synthesize(pac_beats=(3,), pvc_beats=(7,))
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    assert list(beats.beat_class).count(CLASS_SUPRA) == 1
    assert list(beats.beat_class).count(CLASS_VENTRICULAR) == 1


def test_it_lists_an_all_nan_lead_as_unusable() -> None:
    ecg = synthesize(missing=("V3",))
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    assert beats.unusable_leads["V3"] == "missing"
    assert not beats.lead_usable[8] and np.all(np.isnan(beats.median[8]))


def test_it_returns_no_beats_instead_of_raising_on_bad_input() -> None:
    short = beats_analyse(np.zeros((12, 400)), 500, synthesize().leads)
    assert len(short.r_peaks) == 0 and short.flags
    unknown = beats_analyse(np.zeros((2, 5000)), 500, ("X", "Y"))
    assert len(unknown.r_peaks) == 0 and unknown.flags


def test_it_does_not_call_gradual_sinus_arrhythmia_premature() -> None:
    # RR varying by ±10% over a respiratory cycle (range > 120 ms, a sinus arrhythmia), < 15% per cycle.
    ecg = synthesize(heart_rate=60, sinus_arrhythmia=0.1, seconds=20.0)
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    assert np.ptp(beats.rr_ms) > 120
    assert not set(beats.beat_class) & {CLASS_SUPRA, CLASS_VENTRICULAR}


def test_it_does_not_call_a_noisy_on_time_beat_ventricular() -> None:
    ecg = synthesize(noise_mv=0.03, wander_mv=0.3, seed=3)
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    assert CLASS_VENTRICULAR not in set(beats.beat_class)


def test_it_needs_a_following_cycle_to_call_a_beat_premature() -> None:
    ecg = synthesize(pvc_beats=(7,))
    beats = beats_analyse(ecg.signal, ecg.rate_hz, ecg.leads)
    v = np.flatnonzero(beats.beat_class == CLASS_VENTRICULAR)
    assert len(v) == 1 and beats.rr_ms[v[0]] > beats.rr_ms[v[0] - 1]  # the pause after the PVC
    # The same recording cut just after the PVC: no following cycle, so it is not classified.
    cut = int((beats.r_peaks[v[0]] + 0.3 * 500) * ecg.rate_hz / 500)
    short = beats_analyse(ecg.signal[:, :cut], ecg.rate_hz, ecg.leads)
    assert CLASS_VENTRICULAR not in set(short.beat_class)
