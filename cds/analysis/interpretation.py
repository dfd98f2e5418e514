"""Read the rule-based interpretation back: measurement catalogue, stored rows, words for people.

The interpretation (measurements, coded findings, one verdict, the grounded report) is stored as a
``Prediction`` with ``model_name`` ``INTERPRETATION_NAME``. The FHIR builders, the review page, the
CDS Hooks card and the demo all read it through these functions, so they say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding, Verdict

if TYPE_CHECKING:
    from cds.analysis.models import Prediction

DATA_ABSENT_REASON_SYSTEM = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# Words in a ``not_measured`` reason that say the signal itself was the problem (-> ``error``) or
# that the measurement has no meaning for this rhythm (-> ``not-applicable``, e.g. PR in AF).
_SIGNAL_WORDS = ("noise", "noisy", "unusable", "flat", "artifact", "artefact", "quality", "saturat", "missing lead")
_NOT_APPLICABLE_WORDS = ("no p wave", "absent", "fibrillation", "flutter", "paced", "not applicable")


@dataclass(frozen=True)
class MeasurementSpec:
    """One global measurement: its ``EcgMeasurements`` attribute, LOINC code, words and UCUM unit."""

    name: str
    loinc: str
    display: str
    unit: str


MEASUREMENTS: tuple[MeasurementSpec, ...] = (
    MeasurementSpec("heart_rate_bpm", "8867-4", "Heart rate", "/min"),
    MeasurementSpec("pr_ms", "8625-6", "P-R Interval", "ms"),
    MeasurementSpec("qrs_ms", "8633-0", "QRS duration", "ms"),
    MeasurementSpec("qt_ms", "8634-8", "Q-T interval", "ms"),
    MeasurementSpec("qtc_ms", "8636-3", "Q-T interval corrected", "ms"),
    MeasurementSpec("p_axis_deg", "8626-4", "P wave axis", "deg"),
    MeasurementSpec("qrs_axis_deg", "8632-2", "QRS axis", "deg"),
    MeasurementSpec("t_axis_deg", "8638-9", "T wave axis", "deg"),
)
MEASUREMENT_NAMES = frozenset(spec.name for spec in MEASUREMENTS)
ST_NAME = "st_j60_mv"  # per-lead ST deviation at J + 60 ms (LeadMeasurements.st_j60_mv)
VERDICT_WORDS = {
    Verdict.NORMAL: "normal ECG",
    Verdict.ABNORMAL: "abnormal ECG",
    Verdict.OUTSIDE_INTENDED_USE: "outside the intended use (measurements only, no AI verdict)",
    Verdict.TECHNICAL_PROBLEM: "technical problem: repeat the recording",
}


@dataclass(frozen=True)
class MeasurementRow:
    """One line of the measurements table: what, the value as text (or why none), the unit."""

    name: str
    label: str
    value: str
    unit: str
    note: str = ""


def absent_reason_code(reason: str | None) -> str:
    """Return the data-absent-reason code for a measurement left out for ``reason`` (None: not said)."""
    if reason is None:
        return "unknown"
    words = reason.lower()
    if any(word in words for word in _SIGNAL_WORDS):
        return "error"
    if any(word in words for word in _NOT_APPLICABLE_WORDS):
        return "not-applicable"
    return "not-performed"


def qtc_note(measurements: EcgMeasurements) -> str:
    """Return the words naming how QTc was corrected."""
    return f"QTc corrected for heart rate with the {measurements.qtc_formula} formula."


def evidence_text(finding: Finding) -> str:
    """Return a finding's evidence as ``key value; key value`` (empty when it has none)."""
    parts = []
    for key, value in finding.evidence.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(f"{key.replace('_', ' ')} {shown}")
    return "; ".join(parts)


def verdict_words(verdict: str) -> str:
    """Return the verdict as a clinician reads it."""
    return VERDICT_WORDS.get(verdict, verdict)


def _number(value: float, unit: str) -> str:
    return f"{value:.2f}" if unit == "mV" else f"{value:.0f}"


def measurement_rows(measurements: EcgMeasurements) -> list[MeasurementRow]:
    """Return the measurements table: the eight global values, then beat counts (never a made-up value)."""
    rows = []
    for spec in MEASUREMENTS:
        value = getattr(measurements, spec.name)
        note = qtc_note(measurements) if spec.name == "qtc_ms" else ""
        if value is None:
            reason = measurements.not_measured.get(spec.name, "not reported")
            rows.append(MeasurementRow(spec.name, spec.display, "not measured", spec.unit, reason))
        else:
            rows.append(MeasurementRow(spec.name, spec.display, _number(value, spec.unit), spec.unit, note))
    rows.append(
        MeasurementRow("beats", "QRS complexes", str(measurements.beats), "", f"{measurements.duration_s:.1f} s")
    )
    for name, label in (("pvc_count", "PVCs"), ("pac_count", "PACs")):
        value = getattr(measurements, name)
        reason = measurements.not_measured.get(name, "not reported")
        rows.append(
            MeasurementRow(
                name, label, "not measured" if value is None else str(value), "", "" if value is not None else reason
            )
        )
    if measurements.pacing_spikes:
        rows.append(MeasurementRow("pacing_spikes", "Pacing spikes", str(measurements.pacing_spikes), ""))
    return rows


def st_rows(measurements: EcgMeasurements) -> list[tuple[str, str]]:
    """Return (lead, ST deviation at J+60 in mV or why none) for every lead, usable ones first."""
    rows = [
        (lead, "not measured" if m.st_j60_mv is None else f"{m.st_j60_mv:+.2f}")
        for lead, m in measurements.leads.items()
    ]
    return rows + [(lead, f"unusable: {why}") for lead, why in measurements.unusable_leads.items()]


def key_measurements_text(measurements: EcgMeasurements) -> str:
    """Return the key measurements on one line (HR, PR, QRS, QT/QTc with formula, QRS axis)."""

    def shown(value: float | None, unit: str) -> str:
        return "n/m" if value is None else f"{value:.0f}{unit}"

    qt = f"QT/QTc {shown(measurements.qt_ms, '')}/{shown(measurements.qtc_ms, ' ms')} ({measurements.qtc_formula})"
    parts = [
        f"HR {shown(measurements.heart_rate_bpm, '/min')}",
        f"PR {shown(measurements.pr_ms, ' ms')}",
        f"QRS {shown(measurements.qrs_ms, ' ms')}",
        qt,
        f"QRS axis {shown(measurements.qrs_axis_deg, '°')}",
    ]
    return ", ".join(parts)


def interpretation_prediction_fields(clinical: ClinicalReport, measurements: EcgMeasurements | None) -> dict[str, Any]:
    """Return the ``Prediction`` field values that store one interpretation."""
    combined = clinical.combined or {}
    return {
        # The served score (issue 12): the combined probability and its operating point, when fitted.
        "score": combined.get("probability"),
        "threshold": combined.get("threshold"),
        "flagged": clinical.flagged,
        "verdict": clinical.verdict,
        "urgency": clinical.urgency,
        "report_text": clinical.text,
        "findings": [finding.to_json() for finding in clinical.findings],
        "measurements": measurements.to_json() if measurements is not None else {},
        "report_details": {
            "disagreements": list(clinical.disagreements),
            "decoder_text": clinical.decoder_text,
            "decoder_removed": list(clinical.decoder_removed),
            "combined": clinical.combined,
        },
    }


def clinical_report_of(prediction: Prediction) -> ClinicalReport:
    """Rebuild the ClinicalReport stored in an interpretation ``Prediction``."""
    details = prediction.report_details or {}
    return ClinicalReport.from_json(
        {
            "verdict": prediction.verdict,
            "urgency": prediction.urgency or "routine",
            "findings": prediction.findings or [],
            "text": prediction.report_text,
            **details,
        }
    )


def measurements_of(prediction: Prediction) -> EcgMeasurements | None:
    """Rebuild the EcgMeasurements stored in an interpretation ``Prediction`` (None when none were)."""
    return EcgMeasurements.from_json(prediction.measurements) if prediction.measurements else None


def top_findings(clinical: ClinicalReport, limit: int = 3) -> list[Finding]:
    """Return the findings to name first: urgent, then abnormal, then the rest, in their order."""
    ranked = sorted(clinical.findings, key=lambda f: (not f.urgent, not f.abnormal))
    return ranked[:limit]
