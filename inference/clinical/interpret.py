"""Interpret one ECG: measure it, state what the measurements show, check intended use, report.

Two steps, because the report model reads the measured findings (decoder conditioning) and the
report reads the models' outputs: ``measure_and_state`` runs before the models, ``clinical_report``
after them. ``interpret_ecg`` does both for callers without models in between. The worker
(``inference.analyzer``) and the evaluation (``training.evaluate_report``) share these, so what is
evaluated is what is served.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.clinical.beats import Beats, beats_analyse
from inference.clinical.intended_use import intended_use_findings
from inference.clinical.measurements import measure_beats
from inference.clinical.report import clinical_report
from inference.clinical.statements import measured_findings
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding
from inference.results import DetectorResult, FoundationResult


@dataclass(frozen=True)
class MeasuredEcg:
    """The measurements of one ECG and the statements made from them (measured + intended use)."""

    measurements: EcgMeasurements
    findings: tuple[Finding, ...]
    timings_ms: dict[str, float] = field(default_factory=dict)
    beats: Beats | None = None  # kept for localization (inference.localization): where each beat is


@dataclass(frozen=True)
class Interpretation:
    """The measurements and the grounded report of one ECG, and what computing them cost."""

    measurements: EcgMeasurements
    clinical: ClinicalReport
    timings_ms: dict[str, float] = field(default_factory=dict)


def measure_and_state(
    signal: np.ndarray, rate_hz: float, leads: Sequence[str], *, age_years: float | None, sex: str | None
) -> MeasuredEcg:
    """Return the measurements and statements of ``signal`` ((leads, samples) in mV, NaN = missing).

    Never raises on a bad recording: what cannot be measured is named in ``not_measured``.
    """
    started = time.perf_counter()
    beats = beats_analyse(signal, rate_hz, tuple(leads))
    measurements = measure_beats(beats)
    measured_at = time.perf_counter()
    findings = (
        *intended_use_findings(signal, rate_hz, tuple(leads), age_years=age_years, beats=beats),
        *measured_findings(measurements, sex=sex, age_years=age_years),
    )
    timings = {
        "measure_ms": round((measured_at - started) * 1000, 3),
        "statements_ms": round((time.perf_counter() - measured_at) * 1000, 3),
    }
    return MeasuredEcg(measurements=measurements, findings=findings, timings_ms=timings, beats=beats)


def interpretation_of(
    measured: MeasuredEcg, *, detector: DetectorResult | None, foundation: FoundationResult | None
) -> Interpretation:
    """Return the one verdict and report built from ``measured`` and the models' results."""
    started = time.perf_counter()
    clinical = clinical_report(
        measurements=measured.measurements, findings=measured.findings, detector=detector, foundation=foundation
    )
    timings = measured.timings_ms | {"report_ms": round((time.perf_counter() - started) * 1000, 3)}
    return Interpretation(measurements=measured.measurements, clinical=clinical, timings_ms=timings)


def interpret_ecg(
    signal: np.ndarray,
    rate_hz: float,
    leads: Sequence[str],
    *,
    age_years: float | None,
    sex: str | None,
    detector: DetectorResult | None,
    foundation: FoundationResult | None,
) -> Interpretation:
    """Return the measurements and report of one ECG whose models' results are already known."""
    measured = measure_and_state(signal, rate_hz, leads, age_years=age_years, sex=sex)
    return interpretation_of(measured, detector=detector, foundation=foundation)
