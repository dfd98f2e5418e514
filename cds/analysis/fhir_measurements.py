"""The interpretation's part of the write-back set: measurement, ST and finding Observations.

One Observation per global measurement (LOINC, UCUM; ``dataAbsentReason`` and the reason in a note
when it was not measured, never a value), one ST-deviation Observation with a component per lead,
and one Observation per coded finding (SNOMED CT when it has a concept, else our CodeSystem) that
is ``derivedFrom`` the measurement Observations it rests on.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from cds.analysis.fhir_common import (
    CODE_SYSTEM,
    ResultEntry,
    code,
    identifier,
    interpretation,
    lead_code,
    meta,
    procedure_category,
    quantity,
)
from cds.analysis.interpretation import (
    DATA_ABSENT_REASON_SYSTEM,
    MEASUREMENTS,
    MeasurementSpec,
    absent_reason_code,
    evidence_text,
    qtc_note,
)
from cds.ecg.leads import LOINC_SYSTEM, MDC_CODE_BY_LEAD
from inference.clinical.types import ClinicalReport, EcgMeasurements, Finding

SNOMED_SYSTEM = "http://snomed.info/sct"
PRELIMINARY_NOTE = "AI decision support, preliminary until a clinician signs."
ST_ROLE = "st-j60"


@dataclass(frozen=True)
class Context:
    """What every Observation of one analysis shares: identifiers' prefix, the ECG, patient, time."""

    job_key: str
    ecg: dict[str, Any]
    patient: dict[str, Any] | None
    issued: str


def _observation(context: Context, suffix: str, concept: dict[str, Any]) -> dict[str, Any]:
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "meta": meta(),
        "identifier": identifier(f"{context.job_key}-{suffix}"),
        "status": "preliminary",
        "category": procedure_category(),
        "code": concept,
        "issued": context.issued,
        "derivedFrom": [context.ecg],
    }
    if context.patient:
        observation["subject"] = context.patient
    return observation


def _absent(reason: str | None) -> dict[str, Any]:
    absent = absent_reason_code(reason)
    return {"coding": [{"system": DATA_ABSENT_REASON_SYSTEM, "code": absent}], "text": reason or "not reported"}


def _measurement(spec: MeasurementSpec, measurements: EcgMeasurements, context: Context) -> ResultEntry:
    concept = {"coding": [{"system": LOINC_SYSTEM, "code": spec.loinc, "display": spec.display}], "text": spec.display}
    observation = _observation(context, f"measurement-{spec.name}", concept)
    value = getattr(measurements, spec.name)
    notes = [PRELIMINARY_NOTE]
    if value is None:
        reason = measurements.not_measured.get(spec.name)
        observation["dataAbsentReason"] = _absent(reason)
        notes.insert(0, f"Not measured: {reason or 'no reason recorded'}.")
    else:
        observation["valueQuantity"] = quantity(value, spec.unit, spec.unit)
    if spec.name == "qtc_ms":
        notes.insert(0, qtc_note(measurements))
    observation["note"] = [{"text": " ".join(notes)}]
    return ResultEntry(f"measurement-{spec.name}", "Observation", observation, f"urn:uuid:{uuid.uuid4()}")


def _st_component(lead: str, value: float | None, why: str | None) -> dict[str, Any]:
    component: dict[str, Any] = {"code": lead_code(lead)}
    if value is None:
        component["dataAbsentReason"] = _absent(why or "wave not found in this lead")
    else:
        component["valueQuantity"] = quantity(value, "mV", "mV")
    return component


def _st_deviation(measurements: EcgMeasurements, context: Context) -> ResultEntry | None:
    components = [
        _st_component(lead, m.st_j60_mv, None) for lead, m in measurements.leads.items() if lead in MDC_CODE_BY_LEAD
    ]
    components += [
        _st_component(lead, None, f"lead unusable: {why}")
        for lead, why in measurements.unusable_leads.items()
        if lead in MDC_CODE_BY_LEAD
    ]
    if not components:
        return None
    observation = _observation(context, ST_ROLE, code("st-deviation-j60", "ST deviation at J point + 60 ms"))
    observation["component"] = components
    observation["note"] = [{"text": f"Per lead, against the PR-segment baseline, in mV. {PRELIMINARY_NOTE}"}]
    return ResultEntry(ST_ROLE, "Observation", observation, f"urn:uuid:{uuid.uuid4()}")


def measurement_entries(measurements: EcgMeasurements, context: Context) -> dict[str, ResultEntry]:
    """Return the measurement Observations by measurement name (``st_j60_mv`` for the ST one)."""
    entries = {spec.name: _measurement(spec, measurements, context) for spec in MEASUREMENTS}
    st = _st_deviation(measurements, context)
    if st is not None:
        entries["st_j60_mv"] = st
    return entries


def finding_concept(finding: Finding) -> dict[str, Any]:
    """Return the finding's CodeableConcept: SNOMED CT when it has a concept, with our code beside it."""
    codings = [{"system": SNOMED_SYSTEM, "code": finding.snomed, "display": finding.text}] if finding.snomed else []
    codings.append({"system": CODE_SYSTEM, "code": finding.code, "display": finding.text})
    return {"coding": codings, "text": finding.text}


def _used(finding: Finding, measured: dict[str, ResultEntry]) -> list[ResultEntry]:
    """Return the measurement Observations a measured finding rests on (all of them when its evidence names none)."""
    if finding.source != "measured":
        return []
    keys = {key.lower() for key in finding.evidence}
    used = [
        entry
        for name, entry in measured.items()
        if name in keys or (name == "st_j60_mv" and any("st" in k for k in keys))
    ]
    if used:
        return used
    return [entry for entry in measured.values() if "valueQuantity" in entry.resource]


def _finding(index: int, finding: Finding, measured: dict[str, ResultEntry], context: Context) -> ResultEntry:
    observation = _observation(context, f"finding-{index}-{finding.code}", finding_concept(finding))
    observation["valueBoolean"] = True
    observation["interpretation"] = interpretation(finding.abnormal)
    observation["derivedFrom"] += [{"reference": entry.full_url} for entry in _used(finding, measured)]
    evidence = evidence_text(finding)
    words = [f"Asserted by: {finding.source}." + (" Urgent." if finding.urgent else "")]
    if evidence:
        words.insert(0, f"Evidence: {evidence}.")
    observation["note"] = [{"text": " ".join([*words, PRELIMINARY_NOTE])}]
    return ResultEntry(f"finding-{index}", "Observation", observation, f"urn:uuid:{uuid.uuid4()}")


def finding_entries(clinical: ClinicalReport, measured: dict[str, ResultEntry], context: Context) -> list[ResultEntry]:
    """Return one Observation per coded finding, in the report's order."""
    return [_finding(index, finding, measured, context) for index, finding in enumerate(clinical.findings)]


def conclusion_codes(clinical: ClinicalReport) -> list[dict[str, Any]]:
    """Return DiagnosticReport.conclusionCode: the SNOMED CT concepts of the findings (once each)."""
    seen: set[str] = set()
    codes = []
    for finding in clinical.findings:
        if finding.snomed and finding.snomed not in seen:
            seen.add(finding.snomed)
            codes.append({"coding": [{"system": SNOMED_SYSTEM, "code": finding.snomed, "display": finding.text}]})
    return codes
