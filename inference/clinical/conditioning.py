"""The measured-findings vector that conditions the foundation model's report decoder.

The decoder's memory gets one extra token embedding this vector (``FoundationConfig.condition_on_measured``),
so the generated text can follow what the measurements say (sinus rhythm, AF, bundle branch block,
...) instead of contradicting it. The order of ``MEASURED_FINDINGS`` is part of the served model's
signature (input ``measured`` FP32 (B, K)): append new codes at the end and retrain; never reorder.

numpy only (STYLE G14).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from inference.clinical.types import Finding

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
# Statements read from amplitudes in mV: meaningless on signals that are not in mV (ptb-xl-extra is
# z-scored per lead), where ``measured_vector(..., amplitudes_valid=False)`` leaves them 0.
AMPLITUDE_SNOMED = frozenset({"251146004", "164931005", "429622005"})
_INDEX = {code: i for i, code in enumerate(MEASURED_SNOMED)}


def measured_vector(findings: Iterable[Finding], *, amplitudes_valid: bool = True) -> np.ndarray:
    """Return float32 (K,): 1 where a measured finding has that SNOMED code, else 0.

    Only findings with ``source == "measured"`` count (the model's own statements must not feed
    back into its input). Codes outside ``MEASURED_FINDINGS`` are ignored.
    """
    out = np.zeros(N_MEASURED, dtype=np.float32)
    for finding in findings:
        if finding.source != "measured" or finding.snomed not in _INDEX:
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
    amplitudes_valid: bool = True,
) -> np.ndarray:
    """Measure one ECG (mV, (leads, samples)) and return its measured vector (K,).

    Uses ``inference.clinical.measurements.measure_ecg`` and ``statements.measured_findings``.
    """
    from inference.clinical.measurements import measure_ecg
    from inference.clinical.statements import measured_findings  # type: ignore[import-not-found,unused-ignore]

    findings = measured_findings(measure_ecg(signal, rate_hz, leads), sex=sex)
    return measured_vector(findings, amplitudes_valid=amplitudes_valid)
