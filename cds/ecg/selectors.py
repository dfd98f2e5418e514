"""Find our Patients from an EHR's view of them (the CDS hook, a SMART launch)."""

from __future__ import annotations

from typing import Any

from cds.ecg.models import Patient
from cds.fhir.models import SearchIndexEntry

MAX_IDENTIFIERS = 20  # an EHR Patient carries a handful; more is not worth a longer query


def patients_matching_ehr_patient(*, ehr_patient: Any, patient_id: str, organization_id: int) -> list[Patient]:
    """Return our Patients of ``organization_id`` that are the EHR's patient: by business identifier, else by id.

    The EHR's patient id is its own FHIR id, which we never see on ingest; the identifiers (MRN) of
    its Patient resource are what both sides share, so they are matched first. Another
    organisation's patient with the same MRN never matches: MRNs are unique only per hospital.
    """
    ours = Patient.objects.filter(organization_id=organization_id)
    identifiers = usable_identifiers(ehr_patient)
    if identifiers:
        matches = SearchIndexEntry.objects.none()
        for identifier in identifiers:
            matches = matches | SearchIndexEntry.objects.filter(
                resource_type="Patient", name="identifier", system=identifier["system"], value=identifier["value"]
            )
        found = list(ours.filter(resource__in=matches.values("resource_id"), resource__is_current=True))
        if found:
            return found
    return list(ours.filter(logical_id=patient_id))


def usable_identifiers(ehr_patient: Any) -> list[dict[str, str]]:
    """Return the EHR Patient's usable identifiers: objects with a non-empty string value (and string system).

    The EHR's JSON is not validated here: a Patient that is not an object, or identifiers that are
    not, are ignored (the caller then matches on the patient id) rather than failing the request.
    """
    raw = ehr_patient.get("identifier") if isinstance(ehr_patient, dict) else None
    usable = []
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict):
            continue
        value, system = item.get("value"), item.get("system", "")
        if isinstance(value, str) and value and isinstance(system, str):
            usable.append({"system": system, "value": value})
    return usable[:MAX_IDENTIFIERS]
