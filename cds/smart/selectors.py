"""Read what a launch needs: the registered EHR, the mapped clinician, the patient's ECG reviews."""

from __future__ import annotations

from typing import Any

from cds.ecg.models import Patient
from cds.ecg.selectors import patients_matching_ehr_patient
from cds.review.models import Review
from cds.smart.models import SmartClinician, SmartEhr


def ehr_for_iss(iss: str) -> SmartEhr | None:
    """Return the active EHR registered with FHIR base ``iss`` (exact match, trailing slash ignored)."""
    return SmartEhr.objects.filter(iss=iss.rstrip("/"), is_active=True).select_related("organization").first()


def fhir_user_url(*, ehr: SmartEhr, fhir_user: str) -> str:
    """Return ``fhir_user`` as an absolute URL (SMART allows one relative to the FHIR base)."""
    return fhir_user if "://" in fhir_user else f"{ehr.iss}/{fhir_user.lstrip('/')}"


def clinician_user(*, ehr: SmartEhr, fhir_user: str) -> Any | None:
    """Return the active Django user mapped to the EHR's clinician ``fhir_user``, or None."""
    mapping = (
        SmartClinician.objects.filter(ehr=ehr, fhir_user=fhir_user_url(ehr=ehr, fhir_user=fhir_user))
        .select_related("user")
        .first()
    )
    return mapping.user if mapping is not None and mapping.user.is_active else None


def patients_of_ehr_patient(*, ehr: SmartEhr, patient_id: str, ehr_patient: dict[str, Any] | None) -> list[Patient]:
    """Return our Patients of the EHR's organisation that are the EHR's patient: by identifier, else by id.

    Matched as the CDS hook matches its patient (``cds.ecg.selectors``).
    """
    return patients_matching_ehr_patient(
        ehr_patient=ehr_patient, patient_id=patient_id, organization_id=ehr.organization_id
    )


def review_in_context(*, app_context: str, patients: list[Patient]) -> Review | None:
    """Return the review the card's ``appContext`` names when it is one of ``patients``' ECGs, else None.

    ``appContext`` is ``review/<pk>`` or ``ecg/<Observation id>`` (see ``cds.hooks.services``);
    anything else, or a review of another patient (so of another organisation), names nothing.
    """
    kind, _, value = app_context.partition("/")
    reviews = Review.objects.filter(recording__patient__in=patients)
    if kind == "review" and value.isascii() and value.isdigit():
        return reviews.filter(pk=int(value)).first()
    if kind == "ecg" and value:
        return reviews.filter(recording__logical_id=value).first()
    return None
