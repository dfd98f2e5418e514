"""Build the one verdict and the draft report of an ECG from coded findings.

Order of authority, as a cardiologist reads an ECG: first whether the recording may be interpreted
at all (electrode reversal, unreadable signal: repeat it; paced rhythm or a child: outside the
models' intended use), then the measured statements (rhythm, conduction, axis, intervals, voltage,
ST), then the foundation model's morphology statements where its heads agree, then what the
anomaly detector adds. The text never says "normal ECG" when anything flags the ECG, and says so
where the evidence disagrees instead of picking one side.
"""

from __future__ import annotations

from collections.abc import Sequence

from inference.clinical.combined import (
    CombinedScore,
    VerdictEvidence,
    combiner_for,
    evidence_words,
    is_major_measured,
    load_combiners,
    operating_point_words,
    served_abnormal,
    verdict_evidence,
)
from inference.clinical.decoder_check import CONTRADICTIONS, DecoderSentence, Evidence, decoder_text_check
from inference.clinical.scp import SCP_STATEMENTS, SNOMED_OF_SCP
from inference.clinical.statements import SNOMED_SINUS_FAMILY
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding, Verdict
from inference.preprocessing import LEADS_12
from inference.results import DetectorResult, FoundationResult

# A sigmoid head trained with binary cross-entropy states a statement at p >= 0.5; no threshold is
# fitted per statement (too few positives per statement to choose one without overfitting).
STATEMENT_PROBABILITY = 0.5
SINUS_SCP = frozenset({"SR", "SARRH"})  # "sinus rhythm" is confirmed by any measured sinus rhythm
# A model claim the measurements do not support is said in the text when the model is confident
# (p >= 0.8); weaker ones (its sinus-rhythm head gives 0.55-0.7 on most non-sinus rhythms) are
# kept with the report, marked WEAK, for the review page, but would only be noise in every draft.
SAID_DISAGREEMENT_PROBABILITY = 0.8
WEAK = "weak: "
# SCP statements whose subject (rhythm, conduction, intervals, axis, voltage, ST level) the
# measurements own: the model's claim only confirms or disagrees, it is never stated on its own.
MEASURED_DOMAIN = frozenset(SNOMED_OF_SCP) | {"NORM", "LAFB", "LPFB", "SVARR", "BIGU", "TRIGU", "PRC(S)", "SVTAC"}
LABELS = {
    "heart_rate_bpm": "rate",
    "rr_irregularity": "RR regularity",
    "p_wave_present": "P waves",
    "pr_ms": "PR",
    "qrs_ms": "QRS duration",
    "qt_ms": "QT",
    "qtc_ms": "QTc",
    "p_axis_deg": "P axis",
    "qrs_axis_deg": "QRS axis",
    "t_axis_deg": "T axis",
}
DISCLAIMER = "Preliminary AI-generated draft: decision support only, to be reviewed and signed by a clinician."


def clinical_report(
    *,
    measurements: EcgMeasurements,
    findings: Sequence[Finding],
    detector: DetectorResult | None,
    foundation: FoundationResult | None,
) -> ClinicalReport:
    """Return the verdict, urgency, findings and text for one ECG.

    ``findings`` are the measured statements plus the intended-use and technical checks. Steps:
    1. Technical problems (electrode reversal, no readable beats) → repeat the recording.
    2. Intended use (paced rhythm, patient under 18) → measurements only, no AI anomaly verdict.
    3. Otherwise abnormal when the combined evidence (``inference.clinical.combined``: detector,
       foundation model and measured findings, fitted on validation ECGs) reaches its operating
       point, a major measured abnormality is present, or no sinus rhythm was measured. Without a
       combination fitted for the served model versions: abnormal when any source flags (a measured
       statement, the detector, the foundation model or an AI morphology statement), as before.
    4. The decoder's text is checked against the measurements; contradicted sentences are removed.
    """
    findings = list(findings)
    if measurements.beats == 0:
        findings.append(_unreadable(measurements))
    technical = [f for f in findings if f.category == "technical"]
    intended = [f for f in findings if f.category == "intended-use"]
    measured = [f for f in findings if f.source == "measured"]
    # Normal needs a sinus rhythm: P waves before regular QRS (the statements mark which sinus
    # rhythms are abnormal: bradycardia and tachycardia are, sinus arrhythmia is not).
    sinus = any(f.category == "rhythm" and f.snomed in SNOMED_SINUS_FAMILY for f in measured)
    inputs = verdict_evidence(detector, foundation, measured) if detector is not None else None
    combined, combined_note = _combined(detector, foundation, inputs)
    if combined is not None and inputs is not None:
        models_flag = served_abnormal(combined_flagged=combined.flagged, evidence=inputs)
    else:  # no fitted combination for these model versions: abnormal when any source flags
        models_flag = bool(detector is not None and detector.flagged) or _foundation_flag(foundation)
        models_flag = models_flag or any(f.abnormal for f in measured) or not sinus
    provisional_abnormal = models_flag or bool(technical or intended)
    evidence = Evidence(measurements=measurements, measured=measured, abnormal=provisional_abnormal)
    checked = decoder_text_check(foundation.report_text, evidence) if foundation is not None else []
    ai_findings, disagreements, weak_disagreements = _model_statements(foundation, checked, evidence)
    if combined_note:
        # Operational, not clinical (the fallback flags more, never less): for the review page and
        # the quality team, not the clinician's draft.
        weak_disagreements.append(combined_note)
    if technical:
        verdict = Verdict.TECHNICAL_PROBLEM
    elif intended:
        verdict = Verdict.OUTSIDE_INTENDED_USE
    elif provisional_abnormal or (ai_findings and combined is None):
        verdict = Verdict.ABNORMAL
    else:
        verdict = Verdict.NORMAL
    if verdict == Verdict.NORMAL and ai_findings:
        # The statement heads alone do not outweigh the combined evidence: kept for the review page.
        weak_disagreements += [
            f"the AI model suggests {f.text[len('Possible ') :]} (p {f.evidence['statement_probability']:.2f}), "
            "below the combined verdict's operating point"
            for f in ai_findings
        ]
        ai_findings = []
    model_voice = not (technical or intended)  # outside intended use the models are not heard
    if verdict == Verdict.ABNORMAL and not sinus and not any(f.category == "rhythm" for f in measured):
        disagreements.append("the rhythm could not be determined from the measurements")
    all_findings = [*technical, *intended, *measured, *(ai_findings if model_voice else [])]
    text = _text(
        verdict=verdict,
        findings=all_findings,
        disagreements=disagreements if model_voice else [],
        measurements=measurements,
        detector=detector if model_voice else None,
        foundation=foundation if model_voice else None,
        combined=combined if model_voice else None,
    )
    return ClinicalReport(
        verdict=verdict,
        urgency="urgent" if any(f.urgent for f in all_findings) else "routine",
        findings=tuple(all_findings),
        text=text,
        disagreements=(*disagreements, *(WEAK + d for d in weak_disagreements)),
        decoder_text=foundation.report_text if foundation is not None else "",
        decoder_removed=tuple(f"{s.text}: {s.removed_because}" for s in checked if s.removed_because),
        combined=combined.to_json() if combined is not None and model_voice else None,
    )


def _combined(
    detector: DetectorResult | None, foundation: FoundationResult | None, inputs: VerdictEvidence | None
) -> tuple[CombinedScore | None, str]:
    """Return the combined score of ``inputs`` (None when it does not apply) and why it does not, in words."""
    combiners = load_combiners()
    if detector is None or inputs is None or not combiners:
        return None, ""
    combiner, why_not = combiner_for(combiners, detector, foundation)
    if combiner is None:
        return None, f"the combined verdict does not apply ({why_not}), so any flagging source makes it abnormal"
    return combiner.score(inputs), ""


def _foundation_flag(foundation: FoundationResult | None) -> bool:
    if foundation is None or foundation.threshold is None:
        return False
    return foundation.probability_abnormal >= foundation.threshold


def _unreadable(m: EcgMeasurements) -> Finding:
    reason = m.not_measured.get("heart_rate_bpm") or "no QRS complexes could be detected"
    return Finding(
        code="UNREADABLE",
        text="ECG not interpretable: no QRS complexes found; repeat the recording",
        snomed=None,
        category="technical",
        source="technical",
        abnormal=True,
        evidence={"reason": reason, "unusable_leads": dict(m.unusable_leads)},
    )


def _model_statements(
    foundation: FoundationResult | None, checked: Sequence[DecoderSentence], evidence: Evidence
) -> tuple[list[Finding], list[str], list[str]]:
    """Return the model's morphology findings and its disagreements with the measurements (said, weak).

    A morphology statement stands when the statement head gives it p >= 0.5 and a second output
    agrees: the decoder names it, or (diagnostic statements) the superclass head gives its class
    p >= 0.5. A claim in the measurements' domain is never stated by the model; where the
    measurements contradict it or do not confirm it, the disagreement is said.
    """
    if foundation is None:
        return [], [], []
    named = {s.code for s in checked if s.code and not s.removed_because}
    measured_snomed = {f.snomed for f in evidence.measured if f.snomed}
    findings: list[Finding] = []
    said: list[str] = []
    weak: list[str] = []
    for code, p in sorted(foundation.statement_probabilities.items(), key=lambda kv: -kv[1]):
        if p < STATEMENT_PROBABILITY or code not in SCP_STATEMENTS or code == "NORM":
            continue
        statement = SCP_STATEMENTS[code]
        if code in MEASURED_DOMAIN:
            if SNOMED_OF_SCP.get(code) in measured_snomed or (
                code in SINUS_SCP and measured_snomed & SNOMED_SINUS_FAMILY
            ):
                continue  # confirmed by the measured statement, which is already in the report
            reason = CONTRADICTIONS[code](evidence) if code in CONTRADICTIONS else ""
            because = reason or "the measured criteria are not met"
            disagreement = f"the AI model suggests {statement.description.lower()} (p {p:.2f}), {because}"
            (said if p >= SAID_DISAGREEMENT_PROBABILITY else weak).append(disagreement)
            continue
        superclass_p = foundation.superclass_probabilities.get(statement.superclass, 0.0)
        if not (code in named or (statement.superclass and superclass_p >= STATEMENT_PROBABILITY)):
            continue
        findings.append(
            Finding(
                code=code,
                text=f"Possible {statement.description.lower()}",
                snomed=None,
                category="morphology",
                source="foundation-model",
                abnormal=True,
                evidence={"statement_probability": p, "superclass_probability": superclass_p, "decoder": code in named},
            )
        )
    return findings, said, weak


def _lead_span(leads: Sequence[str]) -> str:
    """Return leads in standard order, runs of neighbours written as ranges ("V1–V3, aVL")."""
    order = [lead for lead in LEADS_12 if lead in set(leads)]
    runs: list[list[str]] = []
    for lead in order:
        if runs and LEADS_12.index(lead) == LEADS_12.index(runs[-1][-1]) + 1:
            runs[-1].append(lead)
        else:
            runs.append([lead])
    return ", ".join(run[0] if len(run) == 1 else f"{run[0]}–{run[-1]}" for run in runs)


def _detector_leads(detector: DetectorResult) -> str:
    """Return the leads where the anomaly map is highest (the top quarter, at least one)."""
    scores = detector.per_lead_scores
    if not scores:
        return ""
    ranked = sorted(scores, key=lambda lead: -scores[lead])
    return _lead_span(ranked[: max(1, len(ranked) // 4)])


def _verdict_sentence(
    verdict: str,
    findings: Sequence[Finding],
    detector: DetectorResult | None,
    foundation: FoundationResult | None,
    combined: CombinedScore | None,
) -> str:
    if verdict == Verdict.NORMAL:
        if combined is not None and any(f.abnormal for f in findings):
            # Minor measured findings (sinus bradycardia, first-degree AV block...) that the combined
            # evidence does not take as an abnormal ECG: named above, and the reason said here.
            return (
                f"Otherwise normal ECG: {evidence_words(combined.probability)}, "
                f"below the {operating_point_words(combined.threshold)}."
            )
        return "Normal ECG."
    if verdict == Verdict.TECHNICAL_PROBLEM:
        return "Not interpreted: repeat the recording."
    if verdict == Verdict.OUTSIDE_INTENDED_USE:
        return "No AI anomaly verdict: outside the models' intended use; measured statements only."
    if any(is_major_measured(f) or (f.abnormal and f.source != "measured") for f in findings):
        return "Abnormal ECG."
    if combined is not None and combined.flagged and any(f.abnormal for f in findings):
        # Only minor findings are named: the models' share of the evidence is why it is abnormal.
        return f"Abnormal ECG: {evidence_words(combined.probability)} ({operating_point_words(combined.threshold)})."
    if any(f.abnormal for f in findings):
        return "Abnormal ECG."
    reasons = []
    if combined is not None and combined.flagged:
        reasons.append(f"{evidence_words(combined.probability)} ({operating_point_words(combined.threshold)})")
    if detector is not None and detector.flagged:
        reasons.append(f"high anomaly score in {_detector_leads(detector)} (score {detector.score:.1f})")
    if _foundation_flag(foundation) and foundation is not None:
        reasons.append(f"foundation model abnormal probability {foundation.probability_abnormal:.2f}")
    if not reasons:
        reasons.append("the rhythm could not be classified")
    return f"Abnormal ECG: {'; '.join(reasons)}, no specific finding."


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "not measured"
    return f"{value:.0f}{unit}" if unit.startswith("/") else f"{value:.0f} {unit}"


def _measurement_line(m: EcgMeasurements) -> str:
    qt = "not measured" if m.qt_ms is None else f"{m.qt_ms:.0f}/{_fmt(m.qtc_ms, 'ms')} ({m.qtc_formula})"
    axes = "/".join("—" if a is None else f"{a:.0f}" for a in (m.p_axis_deg, m.qrs_axis_deg, m.t_axis_deg))
    return (
        f"Measurements: ventricular rate {_fmt(m.heart_rate_bpm, '/min')}, PR {_fmt(m.pr_ms, 'ms')}, "
        f"QRS {_fmt(m.qrs_ms, 'ms')}, QT/QTc {qt}, P/QRS/T axes {axes}°."
    )


def _text(
    *,
    verdict: str,
    findings: Sequence[Finding],
    disagreements: Sequence[str],
    measurements: EcgMeasurements,
    detector: DetectorResult | None,
    foundation: FoundationResult | None,
    combined: CombinedScore | None = None,
) -> str:
    order = ["technical", "intended-use", "rhythm", "conduction", "axis", "interval", "voltage", "st-t", "morphology"]
    ranked = sorted(findings, key=lambda f: order.index(f.category) if f.category in order else len(order))
    sentences = [f"{f.text}{' (AI model)' if f.source == 'foundation-model' else ''}." for f in ranked]
    if disagreements:
        sentences.append("Evidence disagrees: " + "; ".join(disagreements) + ".")
    sentences.append(_verdict_sentence(verdict, findings, detector, foundation, combined))
    if measurements.unusable_leads:
        unusable = ", ".join(f"{lead} ({why})" for lead, why in measurements.unusable_leads.items())
        sentences.append(f"Unusable leads, not interpreted: {unusable}.")
    if measurements.not_measured:
        missing = "; ".join(
            f"{LABELS.get(name, name.replace('_', ' '))}: {why}" for name, why in measurements.not_measured.items()
        )
        sentences.append(f"Not measured: {missing}.")
    sentences.append(_measurement_line(measurements))
    sentences.append(DISCLAIMER)
    return " ".join(sentence[0].upper() + sentence[1:] for sentence in sentences)
