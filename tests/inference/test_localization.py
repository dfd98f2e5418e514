"""Tests of the localization that fuses the detector's map with the measured evidence.

Real measurements (``inference.clinical``) of a committed normal PTB-XL ECG (ecg_id 9), with and
without a premature ventricular beat injected by the localization benchmark; the detector map is
given directly (this module's seam), so no model runs here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.analyzer import DetectorServing, EcgInput, detector_result, prepare_detector_inputs
from inference.clinical.interpret import MeasuredEcg, measure_and_state
from inference.localization import MODEL_ONLY, evidence_layers, localize
from inference.preprocessing import LEADS_12, RECORD_SAMPLES
from training.data.ptbxl import load_ptbxl_index, load_ptbxl_record
from training.localization_benchmark import inject, record_view_start_ms

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "ptbxl"
pytestmark = pytest.mark.skipif(not (SAMPLES / "ptbxl_database.csv").exists(), reason="samples/ptbxl not present")
RATE = 500


@pytest.fixture(scope="module")
def normal() -> np.ndarray:
    index = load_ptbxl_index(SAMPLES)
    record = load_ptbxl_record(SAMPLES, index[index["ecg_id"] == 9].iloc[0])
    assert record.sample_rate_hz == RATE
    return np.nan_to_num(record.signal.astype(np.float64))


@pytest.fixture(scope="module")
def with_pvc(normal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    class Record:  # the benchmark's injector reads only these two attributes
        signal = normal
        sample_rate_hz = RATE

    out = inject(Record(), "pvc", seed=3)  # type: ignore[arg-type]
    assert out is not None
    return out[0].astype(np.float64), out[1]


def _measure(signal: np.ndarray) -> MeasuredEcg:
    return measure_and_state(signal, RATE, LEADS_12, age_years=60, sex="female")


def _localize(signal: np.ndarray, detector_map: np.ndarray | None = None, flagged: bool = True):  # type: ignore[no-untyped-def]
    measured = _measure(signal)
    assert measured.beats is not None
    return localize(
        layers=evidence_layers(measured.beats, measured.findings, measured.measurements),
        rate_hz=measured.beats.rate_hz,
        detector_map=detector_map,
        map_threshold=10.0,
        valid=np.ones((12, RECORD_SAMPLES), dtype=bool),
        offset_ms=record_view_start_ms(signal.shape[1], RATE),
        show_model_only=flagged,
    )


def test_a_clean_normal_ecg_gets_no_box(normal: np.ndarray) -> None:
    loc = _localize(normal)
    assert loc.intervals == ()
    assert loc.boxes == 0


def test_a_premature_ventricular_beat_gets_one_box_at_that_beat(with_pvc: tuple[np.ndarray, np.ndarray]) -> None:
    signal, mask = with_pvc
    loc = _localize(signal)
    assert loc.boxes == 1
    assert {i.finding for i in loc.intervals} == {"PVC"}
    assert {i.lead for i in loc.intervals} == set(LEADS_12)  # one box merged over the leads
    marked = np.flatnonzero(mask.any(axis=0)) * 1000.0 / RATE  # the injected beat, ms from start
    box = loc.intervals[0]
    overlap = min(box.end_ms, marked[-1]) - max(box.start_ms, marked[0])
    assert overlap > 0.7 * (marked[-1] - marked[0])  # most of the beat and its pause
    assert box.end_ms - box.start_ms < 2.0 * (marked[-1] - marked[0])  # and not much more


def test_a_dropped_qrs_gets_one_pause_box_where_the_beat_is_missing(normal: np.ndarray) -> None:
    beats = _measure(normal).beats
    assert beats is not None
    r = int(beats.r_peaks[len(beats.r_peaks) // 2])  # 500 Hz, the same rate as the record
    signal = normal.copy()
    a, b = r - 15, r + 225  # the QRS-T (R-30 ms to R+450 ms) replaced by its baseline
    signal[:, a:b] = np.linspace(signal[:, a], signal[:, b], b - a, endpoint=False).T
    loc = _localize(signal)
    assert loc.boxes == 1
    (finding,) = {i.finding for i in loc.intervals}
    assert finding == "pause"
    box = loc.intervals[0]
    assert box.start_ms < r * 2 < box.end_ms  # r in ms at 500 Hz


def test_an_af_segment_gets_one_irregular_run_box_over_it(normal: np.ndarray) -> None:
    class Record:
        signal = normal
        sample_rate_hz = RATE

    out = inject(Record(), "af_segment", seed=1)  # type: ignore[arg-type]
    assert out is not None
    loc = _localize(out[0].astype(np.float64))
    assert loc.boxes == 1
    assert {i.finding for i in loc.intervals} == {"irregular run"}
    marked = np.flatnonzero(out[1].any(axis=0)) * 1000.0 / RATE
    box = loc.intervals[0]
    overlap = min(box.end_ms, marked[-1]) - max(box.start_ms, marked[0])
    assert overlap > 0.6 * (marked[-1] - marked[0])


def test_an_arm_electrode_swap_gets_one_box_on_the_leads_it_changes(normal: np.ndarray) -> None:
    class Record:
        signal = normal
        sample_rate_hz = RATE

    out = inject(Record(), "lead_reversal", seed=1)  # type: ignore[arg-type]
    assert out is not None
    loc = _localize(out[0].astype(np.float64))
    assert {(i.finding, i.lead) for i in loc.intervals} == {
        ("LIMB_REVERSAL_LA_RA", lead) for lead in ("I", "II", "III", "aVR", "aVL")
    }
    assert all(i.end_ms - i.start_ms > 9000 for i in loc.intervals)  # the whole 9.6 s view


def test_a_box_on_the_detector_map_alone_is_shown_only_for_a_flagged_ecg(normal: np.ndarray) -> None:
    detector = np.zeros((12, RECORD_SAMPLES))
    detector[4, 1000:1100] = 10.0 * 50  # far above the served map threshold, one lead, 400 ms
    shown = _localize(normal, detector, flagged=True)
    assert [(i.lead, i.finding) for i in shown.intervals] == [("aVL", MODEL_ONLY)]
    assert _localize(normal, detector, flagged=False).intervals == ()


def test_at_most_four_boxes_are_shown(normal: np.ndarray) -> None:
    detector = np.zeros((12, RECORD_SAMPLES))
    for k in range(8):  # eight separate strong spans
        detector[k, 200 + 250 * k : 260 + 250 * k] = 10.0 * 50
    loc = _localize(normal, detector, flagged=True)
    assert loc.boxes == 4
    scores = [i.score for i in loc.intervals]
    assert scores == sorted(scores, reverse=True)  # strongest kept first


def test_the_served_result_stores_the_labelled_boxes(with_pvc: tuple[np.ndarray, np.ndarray]) -> None:
    signal, _ = with_pvc
    ecg = EcgInput(signal=signal, rate_hz=RATE, leads=LEADS_12)
    inputs = prepare_detector_inputs(ecg)
    serving = DetectorServing("test", score_mean=0.0, score_std=1.0, threshold=5.0, map_threshold=10.0)
    common = {
        "raw_score": 1.0,  # not flagged: measured boxes are still shown
        "anomaly_map": np.zeros((12, RECORD_SAMPLES), dtype=np.float32),
        "serving": serving,
        "server_model_version": "test",
        "timings_ms": {},
    }
    result = detector_result(ecg, inputs, measured=_measure(signal), **common)  # type: ignore[arg-type]
    assert not result.flagged
    assert {(i.finding, i.box) for i in result.intervals} == {("PVC", 0)}
    assert detector_result(ecg, inputs, **common).intervals == ()  # type: ignore[arg-type]
