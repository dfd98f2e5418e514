"""Interpret one ECG: measure it, state what the measurements show, check intended use, report.

The one entry point the worker (``inference.analyzer``) and the evaluation
(``training.evaluate_report``) share, so what is evaluated is what is served.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from inference.clinical.beats import beats_analyse
from inference.clinical.intended_use import intended_use_findings
from inference.clinical.measurements import measure_beats
from inference.clinical.report import clinical_report
from inference.clinical.statements import measured_findings
from inference.clinical.types import ClinicalReport, EcgMeasurements
from inference.results import DetectorResult, FoundationResult


@dataclass(frozen=True)
class Interpretation:
    """The measurements and the grounded report of one ECG, and what computing them cost."""

    measurements: EcgMeasurements
    clinical: ClinicalReport
    timings_ms: dict[str, float] = field(default_factory=dict)


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
    """Return the measurements and report of ``signal`` ((leads, samples) in mV, NaN = missing).

    Never raises on a bad recording: what cannot be measured is named in ``not_measured``.
    """
    started = time.perf_counter()
    beats = beats_analyse(signal, rate_hz, tuple(leads))
    measurements = measure_beats(beats)
    measured_at = time.perf_counter()
    findings = [
        *intended_use_findings(signal, rate_hz, tuple(leads), age_years=age_years, beats=beats),
        *measured_findings(measurements, sex=sex, age_years=age_years),
    ]
    clinical = clinical_report(measurements=measurements, findings=findings, detector=detector, foundation=foundation)
    done = time.perf_counter()
    timings = {
        "measure_ms": round((measured_at - started) * 1000, 3),
        "statements_report_ms": round((done - measured_at) * 1000, 3),
    }
    return Interpretation(measurements=measurements, clinical=clinical, timings_ms=timings)
