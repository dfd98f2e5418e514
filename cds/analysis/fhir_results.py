"""Build the FHIR write-back set for one analysed ECG (docs/architecture.md §2).

Device · anomaly-score Observation (per-lead components; interpretation = the one verdict) · one
Observation per localized interval · one Observation per measurement (LOINC) and the per-lead ST
deviation · one Observation per coded finding · DiagnosticReport (preliminary, conclusion = the
grounded report, conclusionCode = the findings' SNOMED CT concepts) · Provenance (agent = Device) ·
Task (approve, when the verdict is not normal; urgent for an urgent finding). Every resource
carries ``meta.security`` AIAST.

Without an interpretation (``result.clinical`` None: older code paths) the verdict is the
detector's flag and the conclusion the foundation model's text.

The same builder serves our own store (literal ``Type/id`` references) and the EHR (a transaction
Bundle with ``urn:uuid`` references, ``ifNoneExist`` on identifiers and a PUT for Provenance, which
has no identifier in R4).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

from cds.analysis.fhir_common import (
    AI_ASSERTED,
    CODE_SYSTEM,
    DEVICE_IDENTIFIER_SYSTEM,
    INTERPRETATION_SYSTEM,
    UCUM,
    ResultEntry,
    code,
    identifier,
    identifier_system,
    interpretation,
    lead_code,
    meta,
    procedure_category,
    quantity,
)
from cds.analysis.fhir_measurements import Context, conclusion_codes, finding_entries, measurement_entries
from cds.analysis.interpretation import verdict_words
from cds.ecg.leads import LOINC_EKG_STUDY, LOINC_SYSTEM, MDC_CODE_BY_LEAD
from inference.analysis_result import AnalysisResult
from inference.clinical.types import INTERPRETATION_VERSION
from inference.results import INTERPRETATION_NAME

__all__ = [
    "AI_ASSERTED",
    "CODE_SYSTEM",
    "DEVICE_IDENTIFIER_SYSTEM",
    "INTERPRETATION_SYSTEM",
    "UCUM",
    "ResultEntry",
    "identifier_system",
    "result_entries",
    "transaction_bundle",
]


def flagged(result: AnalysisResult) -> bool:
    """Return the one verdict as a flag: the interpretation's, else the detector's."""
    return result.clinical.flagged if result.clinical is not None else result.detector.flagged


def urgent(result: AnalysisResult) -> bool:
    """Return True when a finding makes the ECG urgent (never from the score alone)."""
    return result.clinical is not None and result.clinical.urgency == "urgent"


def _device(result: AnalysisResult) -> ResultEntry:
    detector = result.detector
    models = [(detector.model_name, detector.model_version)]
    if result.foundation is not None:
        models.append((result.foundation.model_name, result.foundation.model_version))
    if result.clinical is not None:
        models.append((INTERPRETATION_NAME, INTERPRETATION_VERSION))
    device = {
        "resourceType": "Device",
        "meta": meta(),
        "identifier": [
            {
                "system": DEVICE_IDENTIFIER_SYSTEM,
                "value": "+".join(f"{name}-{version}" for name, version in models),
            }
        ],
        "status": "active",
        "manufacturer": "ecg-cds (open source)",
        "deviceName": [{"name": name, "type": "model-name"} for name, _ in models],
        "type": {"text": "ECG anomaly detection and interpretation software (decision support)"},
        "version": [{"type": {"text": name}, "value": version} for name, version in models],
    }
    return ResultEntry("device", "Device", device, f"urn:uuid:{uuid.uuid4()}")


def _verdict_component(result: AnalysisResult) -> list[dict[str, Any]]:
    if result.clinical is None:
        return []
    clinical = result.clinical
    concept = code(clinical.verdict, verdict_words(clinical.verdict))
    return [{"code": code("verdict", "ECG interpretation verdict"), "valueCodeableConcept": concept}]


def _score_note(result: AnalysisResult) -> str:
    note = "AI decision support, preliminary until a clinician signs. Higher = more abnormal."
    if result.clinical is None:
        return note
    clinical = result.clinical
    return f"Verdict: {verdict_words(clinical.verdict)} ({clinical.urgency}). {note}"


def _served_score(result: AnalysisResult) -> tuple[float, float, str, list[dict[str, Any]]]:
    """Return the served score, its operating point, what that point is, and the inputs as components.

    With a fitted combination (issue 12) the score is the combined probability of an abnormal ECG
    (detector, foundation model, measurements), and the detector's own score becomes a component;
    without one, the detector's calibrated score as before.
    """
    detector = result.detector
    combined = result.clinical.combined if result.clinical is not None else None
    if not combined:
        return detector.score, detector.threshold, "operating point (model card)", []
    inputs = [{"code": code("detector-score", "anomaly detector z-score"), "valueQuantity": quantity(detector.score)}]
    if result.foundation is not None:
        inputs.append(
            {
                "code": code("foundation-probability", "foundation model abnormal probability"),
                "valueQuantity": quantity(round(result.foundation.probability_abnormal, 4)),
            }
        )
    point = f"operating point of the combined verdict {combined['combiner_version']} (docs/models/verdict.md)"
    recalibration = combined.get("recalibration")
    if recalibration:  # issue 19: both the probability and the point restated; the flag is the raw one's
        point += (
            f", recalibrated for site {recalibration['site']} (artefact {recalibration['id']}"
            f" v{recalibration['version']}; raw probability {float(combined['raw_probability']):.4f})"
        )
    return float(combined["probability"]), float(combined["threshold"]), point, inputs


def _score_observation(result: AnalysisResult, context: Context) -> ResultEntry:
    detector = result.detector
    value, threshold, point, inputs = _served_score(result)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": meta(),
        "identifier": identifier(f"{context.job_key}-anomaly-score"),
        "status": "preliminary",
        "category": procedure_category(),
        "code": code("anomaly-score", "ECG anomaly score"),
        "issued": context.issued,
        "derivedFrom": [context.ecg],
        "valueQuantity": quantity(value),
        # The one verdict, not the score's own comparison: a major measured finding flags below it.
        "interpretation": interpretation(flagged(result)),
        "referenceRange": [{"high": quantity(threshold), "text": point}],
        "note": [{"text": _score_note(result)}],
        "component": [
            {"code": lead_code(lead), "valueQuantity": quantity(score)}
            for lead, score in detector.per_lead_scores.items()
            if lead in MDC_CODE_BY_LEAD
        ]
        + inputs
        + _verdict_component(result),
    }
    if context.patient:
        observation["subject"] = context.patient
    return ResultEntry("anomaly-score", "Observation", observation, f"urn:uuid:{uuid.uuid4()}")


def _explained_by(finding: str, box: int) -> list[dict[str, Any]]:
    """Return the components naming what explains a localized span and the box it belongs to (if known)."""
    if not finding:
        return []
    return [
        {
            "code": code("finding", "What explains the span (measured finding code or 'model only')"),
            "valueString": finding,
        },
        {
            "code": code("box", "Box number: spans with the same number are one box over several leads"),
            "valueInteger": box,
        },
    ]


def _interval_observations(result: AnalysisResult, context: Context) -> list[ResultEntry]:
    entries = []
    for index, interval in enumerate(result.detector.intervals):
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "meta": meta(),
            "identifier": identifier(f"{context.job_key}-interval-{index}"),
            "status": "preliminary",
            "code": code("anomaly-interval", "Localized ECG anomaly"),
            "issued": context.issued,
            "derivedFrom": [context.ecg],
            "valueQuantity": quantity(interval.score),
            "component": [
                {"code": code("lead", "Lead"), "valueCodeableConcept": lead_code(interval.lead)},
                {
                    "code": code("start-offset", "Start offset from recording start"),
                    "valueQuantity": quantity(interval.start_ms, "ms", "ms"),
                },
                {
                    "code": code("end-offset", "End offset from recording start"),
                    "valueQuantity": quantity(interval.end_ms, "ms", "ms"),
                },
            ]
            + _explained_by(interval.finding, interval.box),
        }
        if context.patient:
            observation["subject"] = context.patient
        entries.append(ResultEntry(f"interval-{index}", "Observation", observation, f"urn:uuid:{uuid.uuid4()}"))
    return entries


def _conclusion(result: AnalysisResult) -> str:
    if result.clinical is not None and result.clinical.text:
        return result.clinical.text
    text = result.foundation.report_text if result.foundation is not None else ""
    return text or "No report text: the report model did not run for this ECG."


def _report(result: AnalysisResult, context: Context, observations: list[ResultEntry]) -> ResultEntry:
    # R4 DiagnosticReport.performer cannot reference a Device: the Provenance names the software.
    text = _conclusion(result)
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "meta": meta(),
        "identifier": identifier(f"{context.job_key}-report"),
        "status": "preliminary",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
                        "code": "EC",
                        "display": "Electrocardiac",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC_SYSTEM, "code": LOINC_EKG_STUDY, "display": "EKG study"}]},
        "issued": context.issued,
        "result": [{"reference": entry.full_url} for entry in observations],
        "conclusion": text,
        "presentedForm": [
            {
                "contentType": "text/plain; charset=utf-8",
                "language": "en",
                "data": base64.b64encode(text.encode()).decode(),
                "title": "Draft ECG report (AI, preliminary)",
            }
        ],
    }
    codes = conclusion_codes(result.clinical) if result.clinical is not None else []
    if codes:
        report["conclusionCode"] = codes
    if context.patient:
        report["subject"] = context.patient
    return ResultEntry("report", "DiagnosticReport", report, f"urn:uuid:{uuid.uuid4()}")


def _task(result: AnalysisResult, context: Context, report: ResultEntry) -> ResultEntry:
    task: dict[str, Any] = {
        "resourceType": "Task",
        "meta": meta(),
        "identifier": identifier(f"{context.job_key}-review"),
        "status": "requested",
        "intent": "order",
        # Urgency comes from the findings (AF with a rapid rate, ST elevation...), never from how far
        # the anomaly score lies above its operating point.
        "priority": "urgent" if urgent(result) else "routine",
        "code": {
            "coding": [
                {
                    "system": "http://hl7.org/fhir/CodeSystem/task-code",
                    "code": "approve",
                    "display": "Activate/approve the focal resource",
                }
            ]
        },
        "description": _task_description(result),
        "focus": {"reference": report.full_url},
        "authoredOn": context.issued,
    }
    if context.patient:
        task["for"] = context.patient
    return ResultEntry("review-task", "Task", task, f"urn:uuid:{uuid.uuid4()}")


def _task_description(result: AnalysisResult) -> str:
    what = "the AI-flagged ECG"
    if result.clinical is not None:
        what = f"the ECG read as {verdict_words(result.clinical.verdict)} by the AI"
    return f"Review {what} and sign or correct the preliminary report."


def _provenance(context: Context, device: ResultEntry, entries: list[ResultEntry]) -> ResultEntry:
    provenance = {
        "resourceType": "Provenance",
        "meta": meta(),
        "target": [{"reference": entry.full_url} for entry in entries if entry.resource_type != "Device"],
        "recorded": context.issued,
        "activity": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}]
        },
        "agent": [
            {
                "type": {
                    "coding": [
                        {
                            "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                            "code": "performer",
                        }
                    ]
                },
                "who": {"reference": device.full_url},
            }
        ],
        "entity": [{"role": "source", "what": context.ecg}],
    }
    provenance_id = f"ecgcds-{context.job_key}".replace(":", "-")
    return ResultEntry("provenance", "Provenance", provenance, f"urn:uuid:{uuid.uuid4()}", "PUT", provenance_id)


def _interpretation_observations(result: AnalysisResult, context: Context) -> list[ResultEntry]:
    measured = measurement_entries(result.measurements, context) if result.measurements is not None else {}
    findings = finding_entries(result.clinical, measured, context) if result.clinical is not None else []
    return [*measured.values(), *findings]


def result_entries(
    result: AnalysisResult,
    *,
    job_key: str,
    ecg: dict[str, Any],
    patient: dict[str, Any] | None,
    issued: str,
) -> list[ResultEntry]:
    """Return the write-back set's entries, references between them as ``urn:uuid``.

    ``ecg`` and ``patient`` are FHIR References to the source ECG Observation and its Patient.
    """
    context = Context(job_key=job_key, ecg=ecg, patient=patient, issued=issued)
    device = _device(result)
    score = _score_observation(result, context)
    intervals = _interval_observations(result, context)
    if intervals:
        score.resource["hasMember"] = [{"reference": entry.full_url} for entry in intervals]
    observations = [score, *intervals, *_interpretation_observations(result, context)]
    for observation in observations:
        observation.resource["device"] = {"reference": device.full_url}
    report = _report(result, context, observations)
    entries = [device, *observations, report]
    if flagged(result):
        entries.append(_task(result, context, report))
    provenance = _provenance(context, device, entries)
    recalibration = (result.clinical.combined or {}).get("recalibration") if result.clinical is not None else None
    if recalibration:  # issue 19: the per-site recalibration artefact the stated probability went through
        provenance.resource["entity"].append(
            {
                "role": "derivation",
                "what": {
                    "identifier": {"system": "urn:ecg-cds:site-recalibration", "value": str(recalibration["id"])},
                    "display": f"site recalibration {recalibration['site']} v{recalibration['version']}",
                },
            }
        )
    entries.append(provenance)
    return entries


def transaction_bundle(entries: list[ResultEntry]) -> dict[str, Any]:
    """Return the entries as a transaction Bundle for the EHR (conditional creates, Provenance PUT)."""
    bundle_entries = []
    for entry in entries:
        if entry.method == "PUT":
            resource = {**entry.resource, "id": entry.logical_id}
            request = {"method": "PUT", "url": f"{entry.resource_type}/{entry.logical_id}"}
        else:
            resource = entry.resource
            request = {"method": "POST", "url": entry.resource_type}
            if entry.identifier_query:
                request["ifNoneExist"] = entry.identifier_query
        bundle_entries.append({"fullUrl": entry.full_url, "resource": resource, "request": request})
    return {"resourceType": "Bundle", "type": "transaction", "entry": bundle_entries}
