"""Tests of the synthetic-anomaly localization benchmark on a committed sample ECG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.preprocessing import RECORD_SAMPLES
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record
from training.localization_benchmark import ANOMALY_TYPES, inject, mask_to_record_view, mean_dice, per_ecg_auroc

REPO_ROOT = Path(__file__).resolve().parents[2]
SAMPLES = REPO_ROOT / "samples" / "ptbxl"
pytestmark = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")


@pytest.fixture(scope="module")
def normal_record():  # type: ignore[no-untyped-def]
    index = load_ptbxl_index(SAMPLES)
    return load_ptbxl_record(SAMPLES, index[index["ecg_id"] == 9].iloc[0])


@pytest.mark.parametrize("kind", ANOMALY_TYPES)
def test_it_changes_the_signal_only_inside_the_marked_region(normal_record, kind: str) -> None:  # type: ignore[no-untyped-def]
    out = inject(normal_record, kind, seed=1)
    assert out is not None
    signal, mask = out
    changed = ~np.isclose(signal, normal_record.signal, atol=1e-6)
    assert mask.any() and changed.any()
    assert not (changed & ~mask).any()
    assert np.array_equal(signal, inject(normal_record, kind, seed=1)[0])  # type: ignore[index]


def test_it_maps_masks_onto_the_record_view() -> None:
    mask = np.zeros((12, 5000), dtype=bool)
    mask[2, 2500:2600] = True
    view = mask_to_record_view(mask, 500)
    assert view.shape == (12, RECORD_SAMPLES)
    assert view[2].sum() == 50 and view[[0, 1, 3]].sum() == 0


def test_it_scores_a_perfect_map_as_perfect() -> None:
    mask = np.zeros((1, 12, 100), dtype=bool)
    mask[0, 3, 10:20] = True
    valid = np.ones_like(mask)
    amap = mask.astype(float)
    assert per_ecg_auroc(amap, mask, valid) == 1.0
    assert mean_dice(amap, mask, valid, 0.5) == 1.0
