"""Tests of the synthetic-anomaly localization benchmark on a committed sample ECG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.clinical.beats import beats_analyse
from inference.preprocessing import LEADS_12, RECORD_SAMPLES
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record
from training.localization_benchmark import (
    ANOMALY_TYPES,
    CLINICAL_TYPES,
    LEAD_GROUPS,
    inject,
    mask_to_record_view,
    mean_dice,
    per_ecg_auroc,
    record_view_start_ms,
)

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


def _marked_leads(mask: np.ndarray) -> set[str]:
    return {lead for lead, row in zip(LEADS_12, mask, strict=True) if row.any()}


def _spans(mask: np.ndarray) -> list[tuple[int, int]]:
    cols = np.concatenate([[False], mask.any(axis=0), [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(cols))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_each_clinical_finding_is_marked_where_a_clinician_would_point(normal_record, seed: int) -> None:  # type: ignore[no-untyped-def]
    fs = normal_record.sample_rate_hz
    marks = {kind: inject(normal_record, kind, seed)[1] for kind in CLINICAL_TYPES}  # type: ignore[index]
    for kind in ("pvc", "pac"):  # the premature beat and its pause, every lead
        assert _marked_leads(marks[kind]) == set(LEADS_12)
        ((a, b),) = _spans(marks[kind])
        assert 0.4 * fs < b - a < 1.6 * fs
    assert _marked_leads(marks["af_segment"]) == set(LEADS_12)
    ((a, b),) = _spans(marks["af_segment"])
    assert b - a > 2.0 * fs
    for kind in ("st_change", "t_inversion"):  # one lead group, three beats
        assert _marked_leads(marks[kind]) in [set(g) for g in LEAD_GROUPS.values()]
        assert len(_spans(marks[kind])) == 3
    right, left = {"V1", "V2", "I", "aVL", "V5", "V6"}, {"I", "aVL", "V5", "V6", "V1", "V2", "V3"}
    assert _marked_leads(marks["bundle_branch"]) in (right, left)
    assert len(_spans(marks["bundle_branch"])) >= 6  # the QRS of every beat, not the whole record
    assert _marked_leads(marks["av_block"]) == set(LEADS_12)
    assert _marked_leads(marks["lead_reversal"]) == {"I", "II", "III", "aVR", "aVL"}


def test_seeds_give_different_injections(normal_record) -> None:  # type: ignore[no-untyped-def]
    a, b = inject(normal_record, "af_segment", 1), inject(normal_record, "af_segment", 2)
    assert a is not None and b is not None
    assert not np.array_equal(a[0], b[0])


@pytest.mark.parametrize(("kind", "beat_class"), [("pvc", "V"), ("pac", "S")])
def test_the_beat_analysis_classifies_the_injected_premature_beat(normal_record, kind: str, beat_class: str) -> None:  # type: ignore[no-untyped-def]
    signal, mask = inject(normal_record, kind, seed=5)  # type: ignore[misc]
    beats = beats_analyse(signal.astype(np.float64), normal_record.sample_rate_hz)
    inside = mask.any(axis=0)[beats.r_peaks * normal_record.sample_rate_hz // beats.rate_hz]
    assert list(beats.beat_class[inside]) == [beat_class]
    assert set(beats.beat_class[~inside]) <= {"N", "X"}


def test_the_view_start_matches_the_mask_mapping() -> None:
    assert record_view_start_ms(5000, 500) == 200.0  # (2500 - 2400) / 2 samples at 250 Hz
    assert record_view_start_ms(1000, 100) == 200.0
    assert record_view_start_ms(2000, 250) == 0.0  # shorter than the view: padded at the end
