"""Building blocks shared by the write-back set's builders: entries, meta, identifiers, codes, units."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.conf import settings

from cds.ecg.leads import MDC_CODE_BY_LEAD, MDC_SYSTEM
from cds.fhir.references import identifier_search

AI_ASSERTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
    "code": "AIAST",
    "display": "Artificial Intelligence asserted",
}
CODE_SYSTEM = "urn:ecg-cds:CodeSystem:ecg-ai"
# The Device is the same software everywhere: its identifier (model names and versions) is shared.
DEVICE_IDENTIFIER_SYSTEM = "urn:ecg-cds:analysis:device"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBSERVATION_CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
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
        return identifier_search(identifiers[0])


def meta() -> dict[str, Any]:
    """Return the ``meta`` every resource of the set carries (AI-asserted security label)."""
    return {"security": [AI_ASSERTED]}


def identifier_system() -> str:
    """Return this installation's identifier system for what it writes (``WRITEBACK_IDENTIFIER_SYSTEM``)."""
    return str(settings.WRITEBACK_IDENTIFIER_SYSTEM)


def identifier(value: str) -> list[dict[str, str]]:
    """Return a business identifier in this installation's analysis system."""
    # '#' is avoided in identifier values: several EHRs treat it as a fragment separator.
    return [{"system": identifier_system(), "value": value.replace("#", "-")}]


def quantity(value: float, unit: str = "1", code: str = "1") -> dict[str, Any]:
    """Return a UCUM Quantity."""
    return {"value": round(float(value), 6), "unit": unit, "system": UCUM, "code": code}


def code(code: str, display: str) -> dict[str, Any]:
    """Return a CodeableConcept in our own CodeSystem."""
    return {"coding": [{"system": CODE_SYSTEM, "code": code, "display": display}], "text": display}


def lead_code(lead: str) -> dict[str, Any]:
    """Return the MDC CodeableConcept of a lead."""
    return {"coding": [{"system": MDC_SYSTEM, "code": MDC_CODE_BY_LEAD[lead], "display": f"Lead {lead}"}]}


def procedure_category() -> list[dict[str, Any]]:
    """Return the Observation category of every result Observation (``procedure``)."""
    return [{"coding": [{"system": OBSERVATION_CATEGORY_SYSTEM, "code": "procedure"}]}]


def interpretation(abnormal: bool) -> list[dict[str, Any]]:
    """Return Observation.interpretation: A (abnormal) or N (normal)."""
    coding = {"system": INTERPRETATION_SYSTEM, "code": "A" if abnormal else "N"}
    coding["display"] = "Abnormal" if abnormal else "Normal"
    return [{"coding": [coding]}]
