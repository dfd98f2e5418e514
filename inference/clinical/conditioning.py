"""The measured-findings vector that conditions the foundation model's report decoder.

The decoder's memory gets one extra token embedding this vector (``FoundationConfig.condition_on_measured``),
so the generated text can follow what the measurements say (sinus rhythm, AF, bundle branch block,
...) instead of contradicting it. The order of ``MEASURED_FINDINGS`` is part of the served model's
signature (input ``measured`` FP32 (B, K)): append new codes at the end and retrain; never reorder.

numpy only (docs/style.md G14).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from inference.clinical.interpret import measure_and_state
from inference.clinical.types import EcgMeasurements, Finding

# SNOMED CT concept ids, in input order (K = 21).
MEASURED_FINDINGS: tuple[tuple[str, str], ...] = (
    ("426783006", "sinus rhythm"),
    ("426177001", "sinus bradycardia"),
    ("427084000", "sinus tachycardia"),
    ("427393009", "sinus arrhythmia"),
    ("164889003", "atrial fibrillation"),
    ("164890007", "atrial flutter"),
    ("284470004", "premature atrial complex"),
    ("427172004", "premature ventricular complex"),
    ("270492004", "first-degree AV block"),
    ("59118001", "right bundle branch block"),
    ("713426002", "incomplete right bundle branch block"),
    ("164909002", "left bundle branch block"),
    ("251120003", "incomplete left bundle branch block"),
    ("698252002", "non-specific intraventricular conduction delay"),
    ("39732003", "left axis deviation"),
    ("47665007", "right axis deviation"),
    ("111975006", "prolonged QTc"),
    ("251146004", "low QRS voltage"),
    ("164931005", "ST elevation"),
    ("429622005", "ST depression"),
    ("10370003", "paced rhythm"),
)
MEASURED_SNOMED: tuple[str, ...] = tuple(code for code, _ in MEASURED_FINDINGS)
N_MEASURED = len(MEASURED_SNOMED)
# Statements read from amplitudes in mV (pacing spikes too: a second difference in mV): meaningless
# on signals that are not in mV (ptb-xl-extra is 0.5-40 Hz filtered and z-scored per lead), where
# ``measured_vector(..., amplitudes_valid=False)`` leaves them 0.
AMPLITUDE_SNOMED = frozenset({"251146004", "164931005", "429622005", "10370003"})
# ``statements.measured_findings`` does not state atrial flutter (its AF statement covers an
# irregular rhythm without P waves) and pacing comes from the intended-use check
# (``intended_use_findings``, source "intended-use", SNOMED 10370003), which is taken as measured.
PACED_SNOMED = "10370003"
_INDEX = {code: i for i, code in enumerate(MEASURED_SNOMED)}


def measured_vector(findings: Iterable[Finding], *, amplitudes_valid: bool = True) -> np.ndarray:
    """Return float32 (K,): 1 where a measured finding has that SNOMED code, else 0.

    Only measured findings count (``source == "measured"``, and the intended-use pacing finding):
    the models' own statements must not feed back into the decoder's input. Codes outside
    ``MEASURED_FINDINGS`` are ignored.
    """
    out = np.zeros(N_MEASURED, dtype=np.float32)
    for finding in findings:
        measured = finding.source == "measured" or (finding.source == "intended-use" and finding.snomed == PACED_SNOMED)
        if not measured or finding.snomed not in _INDEX:
            continue
        if not amplitudes_valid and finding.snomed in AMPLITUDE_SNOMED:
            continue
        out[_INDEX[finding.snomed]] = 1.0
    return out


def names_of(vector: np.ndarray) -> list[str]:
    """Return the names of the set entries of a measured vector (for logs and docs)."""
    return [name for (_, name), value in zip(MEASURED_FINDINGS, vector, strict=True) if value > 0.5]


def measured_vector_of_signal(
    signal: np.ndarray,
    rate_hz: float,
    leads: Sequence[str],
    *,
    sex: str | None = None,
    age_years: float | None = None,
    amplitudes_valid: bool = True,
) -> np.ndarray:
    """Measure one ECG (mV, (leads, samples), NaN where missing) and return its measured vector (K,)."""
    return measured_vector(
        measured_findings_of_signal(signal, rate_hz, leads, sex=sex, age_years=age_years)[1],
        amplitudes_valid=amplitudes_valid,
    )


def measured_findings_of_signal(
    signal: np.ndarray, rate_hz: float, leads: Sequence[str], *, sex: str | None = None, age_years: float | None = None
) -> tuple[EcgMeasurements, list[Finding]]:
    """Return (measurements, statements) of one ECG, as the worker makes them (``measure_and_state``)."""
    measured = measure_and_state(signal, rate_hz, leads, age_years=age_years, sex=sex)
    return measured.measurements, list(measured.findings)
