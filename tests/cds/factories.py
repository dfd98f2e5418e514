"""Analysis results built directly (no models, no signal processing): detector, foundation, interpretation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from inference.analysis_result import AnalysisResult
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding, LeadMeasurements, Verdict
from inference.results import AnomalyInterval, DetectorResult, FoundationResult

LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
DECODER_TEXT = "sinus rhythm. anteroseptal myocardial infarction."


def make_result(
    score: float,
    *,
    threshold: float = 1.0,
    intervals: int = 2,
    clinical: ClinicalReport | None = None,
    measurements: EcgMeasurements | None = None,
) -> AnalysisResult:
    """Return both models' results for one ECG; with ``clinical`` and ``measurements`` when given."""
    detector = DetectorResult(
        model_name="ecg-anomaly-detector",
        model_version="1.0.0",
        score=score,
        threshold=threshold,
        per_lead_scores={lead: score / (i + 1) for i, lead in enumerate(LEADS)},
        anomaly_map=np.linspace(0, 1, 12 * 250, dtype=np.float32).reshape(12, 250),
        map_rate_hz=25.0,
        leads=LEADS,
        intervals=tuple(
            AnomalyInterval(lead="V2", start_ms=1000.0 + 500 * i, end_ms=1400.0 + 500 * i, score=0.9)
            for i in range(intervals)
        ),
    )
    foundation = FoundationResult(
        model_name="ecg-foundation",
        model_version="1.0.0",
        probability_abnormal=0.8,
        superclass_probabilities={"NORM": 0.2, "MI": 0.7, "STTC": 0.1, "CD": 0.05, "HYP": 0.02},
        report_text=DECODER_TEXT,
        leads_used=LEADS,
    )
    return AnalysisResult(detector=detector, foundation=foundation, measurements=measurements, clinical=clinical)


def make_measurements(**overrides: Any) -> EcgMeasurements:
    """Return a plausible 10 s sinus ECG's measurements; V6 unusable (flat). Override any field."""
    leads = {
        lead: LeadMeasurements(r_amplitude_mv=0.9, st_j60_mv=round(0.02 * (i - 5), 2), t_amplitude_mv=0.3)
        for i, lead in enumerate(LEADS[:-1])
    }
    values: dict[str, Any] = {
        "heart_rate_bpm": 72.0,
        "rr_mean_ms": 833.0,
        "rr_irregularity": 0.03,
        "rhythm_regular": True,
        "p_wave_present": True,
        "p_wave_fraction": 0.95,
        "pr_ms": 164.0,
        "qrs_ms": 92.0,
        "qt_ms": 384.0,
        "qtc_ms": 402.0,
        "p_axis_deg": 55.0,
        "qrs_axis_deg": 40.0,
        "t_axis_deg": 35.0,
        "beats": 12,
        "pvc_count": 0,
        "pac_count": 1,
        "duration_s": 10.0,
        "leads": leads,
        "unusable_leads": {"V6": "flat line"},
    }
    return EcgMeasurements(**(values | overrides))


SINUS = Finding(
    code="SR",
    text="Sinus rhythm",
    snomed="426783006",
    category="rhythm",
    source="measured",
    abnormal=False,
    evidence={"heart_rate_bpm": 72.0, "p_wave_fraction": 0.95},
)
CRBBB = Finding(
    code="CRBBB",
    text="Complete right bundle branch block",
    snomed="713427006",
    category="conduction",
    source="measured",
    abnormal=True,
    evidence={"qrs_ms": 132.0, "V1": "rsR'"},
)
AFIB_RAPID = Finding(
    code="AFIB",
    text="Atrial fibrillation with rapid ventricular response",
    snomed="164889003",
    category="rhythm",
    source="measured",
    abnormal=True,
    evidence={"heart_rate_bpm": 142.0, "rr_irregularity": 0.21, "p_wave_fraction": 0.05},
    urgent=True,
)
ISCHEMIA_MODEL = Finding(
    code="ISC_",
    text="Non-specific ischemic ST-T changes (model)",
    snomed=None,
    category="st-t",
    source="foundation-model",
    abnormal=True,
    evidence={"probability": 0.71},
)


def normal_clinical() -> ClinicalReport:
    """Return a normal verdict: sinus rhythm, nothing else."""
    return ClinicalReport(
        verdict=Verdict.NORMAL,
        urgency="routine",
        findings=(SINUS,),
        text="Sinus rhythm, rate 72/min. Normal ECG.",
        decoder_text="sinus rhythm. normal ecg.",
    )


def flagged_clinical(*, urgent: bool = False) -> ClinicalReport:
    """Return an abnormal verdict: RBBB (measured), a model-only ST-T finding, and AF when ``urgent``."""
    findings = (AFIB_RAPID, CRBBB, ISCHEMIA_MODEL) if urgent else (SINUS, CRBBB, ISCHEMIA_MODEL)
    return ClinicalReport(
        verdict=Verdict.ABNORMAL,
        urgency="urgent" if urgent else "routine",
        findings=findings,
        text="; ".join(f.text for f in findings) + ". Abnormal ECG.",
        disagreements=("The report model says anteroseptal infarction; no Q waves in V1-V3.",),
        decoder_text=DECODER_TEXT,
        decoder_removed=("anteroseptal myocardial infarction",),
    )


def with_interpretation(
    result: AnalysisResult, clinical: ClinicalReport, measurements: EcgMeasurements | None = None
) -> AnalysisResult:
    """Return ``result`` with an interpretation (and measurements, the default ones unless given)."""
    return dataclasses.replace(result, clinical=clinical, measurements=measurements or make_measurements())
