"""Build the FHIR write-back set for one analysed ECG (DESIGN.md §2).

Device · anomaly-score Observation (per-lead components) · one Observation per localized interval ·
DiagnosticReport (preliminary, conclusion = report text) · Provenance (agent = Device) · Task
(approve, when flagged). Every resource carries ``meta.security`` AIAST.

The same builder serves our own store (literal ``Type/id`` references) and the EHR (a transaction
Bundle with ``urn:uuid`` references, ``ifNoneExist`` on identifiers and a PUT for Provenance, which
has no identifier in R4).
"""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from cds.ecg.leads import LOINC_EKG_STUDY, LOINC_SYSTEM, MDC_CODE_BY_LEAD, MDC_SYSTEM
from inference.results import AnalysisResult

AI_ASSERTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
CODE_SYSTEM = "urn:ecg-cds:CodeSystem:ecg-ai"
IDENTIFIER_SYSTEM = "urn:ecg-cds:analysis"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
UCUM = "http://unitsofmeasure.org"


@dataclass
class ResultEntry:
    """One resource of the set, with how to create it (POST with ifNoneExist, or PUT)."""

    role: str
    resource_type: str
    resource: dict[str, Any]
    full_url: str
    method: str = "POST"
    logical_id: str | None = None  # fixed id (PUT) for resources without identifiers

    @property
    def identifier_query(self) -> str | None:
        identifiers = self.resource.get("identifier") or []
        if not identifiers:
            return None
        # ifNoneExist is a URL query: percent-encode the token, or a '+' in a version string (the
        # Device's) reads as a space on the server, matches nothing and a replay creates a duplicate.
        token = f"{identifiers[0]['system']}|{identifiers[0]['value']}"
        return f"identifier={quote(token, safe=':|/')}"


def _meta() -> dict[str, Any]:
    return {"security": [AI_ASSERTED]}


def _identifier(value: str) -> list[dict[str, str]]:
    # '#' is avoided in identifier values: several EHRs treat it as a fragment separator.
    return [{"system": IDENTIFIER_SYSTEM, "value": value.replace("#", "-")}]


def _quantity(value: float, unit: str = "1", code: str = "1") -> dict[str, Any]:
    return {"value": round(float(value), 6), "unit": unit, "system": UCUM, "code": code}


def _code(code: str, display: str) -> dict[str, Any]:
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def _lead_code(lead: str) -> dict[str, Any]:
    return {"coding": [{"system": MDC_SYSTEM, "code": MDC_CODE_BY_LEAD[lead], "display": f"Lead {lead}"}]}


def _device(result: AnalysisResult) -> ResultEntry:
    detector = result.detector
    version = f"{detector.model_name}-{detector.model_version}"
    names = [{"name": detector.model_name, "type": "model-name"}]
    versions = [{"type": {"text": detector.model_name}, "value": detector.model_version}]
    if result.foundation is not None:
        names.append({"name": result.foundation.model_name, "type": "model-name"})
        versions.append({"type": {"text": result.foundation.model_name}, "value": result.foundation.model_version})
        version += f"+{result.foundation.model_name}-{result.foundation.model_version}"
    device = {
        "resourceType": "Device",
        "meta": _meta(),
        "identifier": [{"system": f"{IDENTIFIER_SYSTEM}:device", "value": version}],
        "status": "active",
        "manufacturer": "ecg-cds (open source)",
        "deviceName": names,
        "type": {"text": "ECG anomaly detection software (decision support)"},
        "version": versions,
    }
    return ResultEntry("device", "Device", device, f"urn:uuid:{uuid.uuid4()}")


def _score_observation(
    result: AnalysisResult, *, job_key: str, ecg: dict[str, Any], patient: dict[str, Any] | None, issued: str
) -> ResultEntry:
    detector = result.detector
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": _meta(),
        "identifier": _identifier(f"{job_key}-anomaly-score"),
        "status": "preliminary",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "procedure"}]}
        ],
        "code": _code("anomaly-score", "ECG anomaly score"),
        "issued": issued,
        "derivedFrom": [ecg],
        "valueQuantity": _quantity(detector.score),
        "interpretation": [
            {
                "coding": [
                    {
                        "system": INTERPRETATION_SYSTEM,
                        "code": "A" if detector.flagged else "N",
                        "display": "Abnormal" if detector.flagged else "Normal",
                    }
                ]
            }
        ],
        "referenceRange": [{"high": _quantity(detector.threshold), "text": "operating point (model card)"}],
        "note": [{"text": "AI decision support, preliminary until a clinician signs. Higher = more abnormal."}],
        "component": [
            {"code": _lead_code(lead), "valueQuantity": _quantity(score)}
            for lead, score in detector.per_lead_scores.items()
            if lead in MDC_CODE_BY_LEAD
        ],
    }
    if patient:
        observation["subject"] = patient
    return ResultEntry("anomaly-score", "Observation", observation, f"urn:uuid:{uuid.uuid4()}")


def _interval_observations(
    result: AnalysisResult, *, job_key: str, ecg: dict[str, Any], patient: dict[str, Any] | None, issued: str
) -> list[ResultEntry]:
    entries = []
    for index, interval in enumerate(result.detector.intervals):
        observation: dict[str, Any] = {
            "resourceType": "Observation",
            "meta": _meta(),
            "identifier": _identifier(f"{job_key}-interval-{index}"),
            "status": "preliminary",
            "code": _code("anomaly-interval", "Localized ECG anomaly"),
            "issued": issued,
            "derivedFrom": [ecg],
            "valueQuantity": _quantity(interval.score),
            "component": [
                {"code": _code("lead", "Lead"), "valueCodeableConcept": _lead_code(interval.lead)},
                {
                    "code": _code("start-offset", "Start offset from recording start"),
                    "valueQuantity": _quantity(interval.start_ms, "ms", "ms"),
                },
                {
                    "code": _code("end-offset", "End offset from recording start"),
                    "valueQuantity": _quantity(interval.end_ms, "ms", "ms"),
                },
            ],
        }
        if patient:
            observation["subject"] = patient
        entries.append(ResultEntry(f"interval-{index}", "Observation", observation, f"urn:uuid:{uuid.uuid4()}"))
    return entries


def _report(
    result: AnalysisResult,
    *,
    job_key: str,
    patient: dict[str, Any] | None,
    issued: str,
    observations: list[ResultEntry],
) -> ResultEntry:
    # R4 DiagnosticReport.performer cannot reference a Device: the Provenance names the software.
    text = result.foundation.report_text if result.foundation is not None else ""
    if not text:
        text = "No report text: the report model did not run for this ECG."
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "meta": _meta(),
        "identifier": _identifier(f"{job_key}-report"),
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
        "issued": issued,
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
    if patient:
        report["subject"] = patient
    return ResultEntry("report", "DiagnosticReport", report, f"urn:uuid:{uuid.uuid4()}")


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
    device = _device(result)
    score = _score_observation(result, job_key=job_key, ecg=ecg, patient=patient, issued=issued)
    score.resource["device"] = {"reference": device.full_url}
    intervals = _interval_observations(result, job_key=job_key, ecg=ecg, patient=patient, issued=issued)
    for interval in intervals:
        interval.resource["device"] = {"reference": device.full_url}
    if intervals:
        score.resource["hasMember"] = [{"reference": entry.full_url} for entry in intervals]
    report = _report(result, job_key=job_key, patient=patient, issued=issued, observations=[score, *intervals])
    entries = [device, score, *intervals, report]
    if result.detector.flagged:
        task: dict[str, Any] = {
            "resourceType": "Task",
            "meta": _meta(),
            "identifier": _identifier(f"{job_key}-review"),
            "status": "requested",
            "intent": "order",
            "priority": "urgent" if result.detector.score >= 2 * result.detector.threshold else "routine",
            "code": {
                "coding": [
                    {
                        "system": "http://hl7.org/fhir/CodeSystem/task-code",
                        "code": "approve",
                        "display": "Activate/approve the focal resource",
                    }
                ]
            },
            "description": "Review the AI-flagged ECG and sign or correct the preliminary report.",
            "focus": {"reference": report.full_url},
            "authoredOn": issued,
        }
        if patient:
            task["for"] = patient
        entries.append(ResultEntry("review-task", "Task", task, f"urn:uuid:{uuid.uuid4()}"))
    provenance = {
        "resourceType": "Provenance",
        "meta": _meta(),
        "target": [{"reference": entry.full_url} for entry in entries if entry.resource_type != "Device"],
        "recorded": issued,
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
        "entity": [{"role": "source", "what": ecg}],
    }
    provenance_id = f"ecgcds-{job_key}".replace(":", "-")
    entries.append(
        ResultEntry("provenance", "Provenance", provenance, f"urn:uuid:{uuid.uuid4()}", "PUT", provenance_id)
    )
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
