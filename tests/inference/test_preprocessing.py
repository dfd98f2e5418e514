"""Tests of the shared preprocessing: quality flags, bad input, and training/serving identity."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from inference import preprocessing as pp

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
needs_samples = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")


def synthetic_ecg(seconds: float = 10.0, rate: int = 500, hr_bpm: float = 70.0) -> np.ndarray:
    """Return a (12, n) mV signal with Gaussian QRS and T waves at a regular rate."""
    t = np.arange(int(seconds * rate)) / rate
    x = np.zeros_like(t)
    for r in np.arange(0.4, seconds, 60.0 / hr_bpm):
        x += 1.0 * np.exp(-0.5 * ((t - r) / 0.012) ** 2) + 0.25 * np.exp(-0.5 * ((t - r - 0.28) / 0.05) ** 2)
    gains = np.linspace(0.5, 1.5, 12)[:, None]
    return (gains * x[None, :]).astype(np.float64)


def test_it_builds_detector_inputs_with_fixed_shapes() -> None:
    out = pp.detector_inputs(synthetic_ecg(), 500)
    assert out.record.shape == (12, pp.RECORD_SAMPLES)
    assert out.beats.shape == (pp.MAX_BEATS, 12, pp.BEAT_SAMPLES)
    assert out.beat_valid.sum() >= 8
    assert out.flags == ()
    assert np.isfinite(out.record).all()


def test_it_removes_amplitude_so_z_scored_and_mv_inputs_match() -> None:
    x = synthetic_ecg()
    z = (x - x.mean(1, keepdims=True)) / x.std(1, keepdims=True)
    a = pp.detector_inputs(x, 500).record
    b = pp.detector_inputs(z * 3.0 + 1.0, 500).record
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_it_flags_and_zeroes_missing_and_flat_leads() -> None:
    x = synthetic_ecg()
    x[3] = np.nan
    x[7] = 0.25
    out = pp.detector_inputs(x, 500)
    assert "missing_leads:aVR" in out.flags
    assert "flat_leads:V2" in out.flags
    assert not out.lead_valid[3] and not out.lead_valid[7]
    assert np.all(out.record[[3, 7]] == 0)


def test_it_interpolates_nan_stretches_and_flags_them() -> None:
    x = synthetic_ecg()
    x[0, 1000:1200] = np.nan
    out = pp.detector_inputs(x, 500)
    assert "nan_stretches:I" in out.flags
    assert out.lead_valid[0]
    assert np.isfinite(out.record).all()


def test_it_flags_clipped_leads() -> None:
    x = synthetic_ecg()
    x[1] = np.clip(x[1], None, 0.15)
    assert any(f.startswith("clipped_leads:") and "II" in f for f in pp.detector_inputs(x, 500).flags)


def test_it_pads_short_and_truncates_long_recordings_with_flags() -> None:
    short = pp.detector_inputs(synthetic_ecg(seconds=5.0), 500)
    assert any(f.startswith("short_padded") for f in short.flags)
    assert short.sample_valid.sum() == 5 * pp.DETECTOR_RATE_HZ
    long = pp.detector_inputs(synthetic_ecg(seconds=60.0), 500)
    assert any(f.startswith("long_truncated") for f in long.flags)
    assert long.record.shape == (12, pp.RECORD_SAMPLES)


def test_it_refuses_too_short_recordings_and_no_usable_lead() -> None:
    with pytest.raises(ValueError, match="too short"):
        pp.detector_inputs(synthetic_ecg(seconds=1.0), 500)
    with pytest.raises(ValueError, match="no usable lead"):
        pp.detector_inputs(np.zeros((12, 5000)), 500)
    with pytest.raises(ValueError, match="no known lead"):
        pp.detector_inputs(np.zeros((1, 5000)), 500, leads=["X"])


def test_it_accepts_a_single_lead_and_flags_it() -> None:
    out = pp.detector_inputs(synthetic_ecg()[1:2], 500, leads=["II"])
    assert "single_lead" in out.flags
    assert out.lead_valid.sum() == 1 and out.lead_valid[1]


def test_it_keeps_an_ecg_without_beats_and_flags_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pp, "detect_r_peaks", lambda *args, **kwargs: np.zeros(0, dtype=np.int64))
    out = pp.detector_inputs(synthetic_ecg(), 500)
    assert "no_beats_detected" in out.flags
    assert not out.beat_valid.any()
    assert np.all(out.beats == 0)


def test_it_returns_no_peaks_instead_of_raising_on_noise() -> None:
    peaks = pp.detect_r_peaks(np.zeros((12, 2400)), 250)
    assert peaks.dtype == np.int64


def test_it_resamples_other_rates() -> None:
    out = pp.detector_inputs(synthetic_ecg(rate=360), 360)
    assert out.record.shape == (12, pp.RECORD_SAMPLES)
    assert out.beat_valid.sum() >= 8


@needs_samples
def test_it_makes_training_and_serving_use_the_same_function() -> None:
    """Training's data helper and serving must both call inference.preprocessing.detector_inputs."""
    from training import detector_data
    from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record

    assert detector_data.detector_inputs is pp.detector_inputs
    assert "detector_inputs(" in inspect.getsource(detector_data.arrays_from_records)
    index = load_ptbxl_index(SAMPLES)
    record = load_ptbxl_record(SAMPLES, index.iloc[0])
    arrays, refused = detector_data.arrays_from_records([record])
    direct = pp.detector_inputs(record.signal, record.sample_rate_hz)
    assert not refused
    np.testing.assert_array_equal(arrays.arrays["record"][0], direct.record)
    np.testing.assert_array_equal(arrays.arrays["beats"][0], direct.beats)


def test_it_does_not_import_torch() -> None:
    source = inspect.getsource(pp)
    assert "import torch" not in source
