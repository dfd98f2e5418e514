"""foundation_inputs: shapes, lead masks, unit invariance, bad input; training/eval share it."""

from __future__ import annotations

import numpy as np
import pytest

import inference.preprocessing as prep
from inference.preprocessing import LEADS_12, foundation_inputs


def ecg(seconds: float = 10.0, rate: int = 500, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    beat = np.exp(-(((t % 0.8) - 0.3) ** 2) / 0.0005)
    return np.stack([beat * (1 + 0.1 * i) + 0.02 * rng.standard_normal(len(t)) for i in range(12)])


def test_it_returns_12_by_1000_with_a_full_mask() -> None:
    out = foundation_inputs(ecg(), 500, LEADS_12)
    assert out.signal.shape == (12, 1000) and out.signal.dtype == np.float32
    assert out.lead_mask.all() and out.leads_used == LEADS_12


def test_it_is_invariant_to_per_lead_affine_units() -> None:
    x = ecg()
    scale = np.linspace(0.5, 3.0, 12)[:, None]
    a = foundation_inputs(x, 500).signal
    b = foundation_inputs(x * scale + 7.0, 500).signal
    np.testing.assert_allclose(a, b, atol=1e-4)


def test_it_masks_missing_and_flat_leads_and_records_the_subset() -> None:
    x = ecg()
    x[3] = np.nan
    x[7] = 0.0
    out = foundation_inputs(x, 500)
    assert not out.lead_mask[3] and not out.lead_mask[7]
    assert (out.signal[[3, 7]] == 0).all()
    assert any(f.startswith("missing_leads") for f in out.quality)
    only = foundation_inputs(ecg()[:2], 500, ["I", "II"])
    assert only.leads_used == ("I", "II")


def test_it_refuses_short_unknown_and_empty_input_with_a_reason() -> None:
    with pytest.raises(ValueError, match="too short"):
        foundation_inputs(ecg(1.5), 500)
    with pytest.raises(ValueError, match="no known lead"):
        foundation_inputs(ecg()[:1], 500, ["X9"])
    with pytest.raises(ValueError, match="no usable lead"):
        foundation_inputs(np.zeros((12, 5000)), 500)


def test_it_pads_short_recordings_and_flags_them() -> None:
    out = foundation_inputs(ecg(4.0, rate=250), 250)
    assert out.signal.shape == (12, 1000) and (out.signal[:, 400:] == 0).all()
    assert any(f.startswith("short_padded") for f in out.quality)


def test_it_is_the_function_training_and_evaluation_call() -> None:
    import training.evaluate_foundation as ev
    import training.foundation_data as fd

    assert fd.foundation_inputs is prep.foundation_inputs
    assert ev.foundation_inputs is prep.foundation_inputs
