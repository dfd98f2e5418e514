"""Lean search results: ``_summary``, ``_elements`` and the waveform left out unless asked for.

A resource sent with less than it holds carries the ``SUBSETTED`` tag (FHIR R4 §3.1.1.5.7), so a
client never mistakes it for the whole resource (nor updates with it).
"""

from __future__ import annotations

import copy
from typing import Any

from cds.core.exceptions import FhirError

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
# Elements kept by _summary=true: the R4 summary (Σ) elements of the types we serve. The waveform's
# samples (SampledData.data) are dropped even there: a summary of an ECG is not 230 kB.
SUMMARY_ELEMENTS = {
    "Patient": {"identifier", "active", "name", "telecom", "gender", "birthDate", "deceasedBoolean", "address"},
    "Observation": {
        "identifier",
        "basedOn",
        "partOf",
        "status",
        "category",
        "code",
        "subject",
        "focus",
        "encounter",
        "effectiveDateTime",
        "effectivePeriod",
        "effectiveInstant",
        "issued",
        "performer",
        "valueQuantity",
        "valueCodeableConcept",
        "valueString",
        "valueBoolean",
        "valueInteger",
        "valueRange",
        "valueRatio",
        "valueSampledData",
        "valueTime",
        "valueDateTime",
        "valuePeriod",
        "hasMember",
        "derivedFrom",
        "component",
    },
    "DiagnosticReport": {
        "identifier",
        "basedOn",
        "status",
        "category",
        "code",
        "subject",
        "encounter",
        "effectiveDateTime",
        "effectivePeriod",
        "issued",
        "performer",
        "resultsInterpreter",
        "result",
        "presentedForm",
    },
    "Task": {
        "identifier",
        "instantiatesCanonical",
        "basedOn",
        "groupIdentifier",
        "status",
        "businessStatus",
        "intent",
        "priority",
        "code",
        "description",
        "focus",
        "for",
        "encounter",
        "executionPeriod",
        "authoredOn",
        "lastModified",
        "requester",
        "owner",
    },
    "Device": {"identifier", "udiCarrier", "status", "manufacturer", "deviceName", "type", "version"},
    "Provenance": {"target", "recorded", "agent", "entity"},
}
_ALWAYS = {"resourceType", "id", "meta"}  # never removed (the spec's mandatory elements of Resource)


def refuse_subsetted(content: dict[str, Any], resource_type: str) -> None:
    """Refuse (422) to update from a SUBSETTED copy: it would silently drop what the search left out."""
    tags = (content.get("meta") or {}).get("tag") or []
    if any(isinstance(t, dict) and t.get("code") == "SUBSETTED" for t in tags):
        raise FhirError.single(
            422,
            "processing",
            f"this {resource_type} is a SUBSETTED search result; read it whole (GET {resource_type}/id) and update that",
            f"{resource_type}.meta.tag",
        )


def _tagged(content: dict[str, Any]) -> dict[str, Any]:
    meta = dict(content.get("meta") or {})
    tags = [t for t in meta.get("tag") or [] if t.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    return {**content, "meta": meta}


def _without_samples(content: dict[str, Any]) -> dict[str, Any] | None:
    """Return the resource with every SampledData's ``data`` removed, or None when it had none."""
    found = False
    shaped = copy.deepcopy(content)
    holders = [shaped, *(c for c in shaped.get("component") or [] if isinstance(c, dict))]
    for holder in holders:
        sampled = holder.get("valueSampledData")
        if isinstance(sampled, dict) and "data" in sampled:
            del sampled["data"]
            found = True
    return shaped if found else None


def shape_resource(content: dict[str, Any], *, summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    """Return ``content`` as a search answers it: subsetted per ``_summary``/``_elements``; no samples by default.

    The samples come back only with ``_summary=false`` or an ``_elements`` naming ``component``/``valueSampledData``.
    """
    subsetted = False
    shaped = content
    if elements is not None:
        kept = _ALWAYS | set(elements)
        shaped = {k: v for k, v in shaped.items() if k in kept}
        subsetted = shaped.keys() != content.keys()
    elif summary == "true":
        kept = _ALWAYS | SUMMARY_ELEMENTS.get(content.get("resourceType", ""), set())
        shaped = {k: v for k, v in shaped.items() if k in kept}
        subsetted = shaped.keys() != content.keys()
    elif summary == "data":
        shaped = {k: v for k, v in shaped.items() if k != "text"}
        subsetted = "text" in content
    asked_for_samples = summary == "false" or bool(set(elements or []) & {"component", "valueSampledData"})
    if not asked_for_samples:
        lean = _without_samples(shaped)
        if lean is not None:
            shaped, subsetted = lean, True
    return _tagged(shaped) if subsetted else shaped
