"""Create patients and ECG recordings from FHIR resources."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
from django.conf import settings
from django.db import transaction

from cds.core.exceptions import FhirError
from cds.ecg.decoding import DecodedEcg, ecg_decode
from cds.ecg.leads import is_ecg_code
from cds.ecg.models import EcgRecording, Patient
from cds.fhir.dates import age_range_years, date_range
from cds.fhir.models import StoredResource
from cds.fhir.services import fhir_resource_store, fhir_resource_update


@transaction.atomic
def patient_create(*, content: dict[str, Any], source: str, organization_id: int) -> StoredResource:
    """Store a Patient of ``organization_id`` and the demographics the models use."""
    birth_date = content.get("birthDate") or ""
    if birth_date:
        date_range(birth_date, expression="Patient.birthDate")
    resource = fhir_resource_store(
        resource_type="Patient", content=content, source=source, organization_id=organization_id
    )
    patient = Patient(
        resource=resource,
        logical_id=resource.logical_id,
        organization_id=organization_id,
        gender=content.get("gender") or "",
        birth_date=birth_date,
    )
    patient.full_clean(exclude=["resource", "organization"])
    patient.save()
    return resource


@transaction.atomic
def patient_update(
    *, logical_id: str, content: dict[str, Any], source: str, organization_id: int, expected_version: int | None
) -> StoredResource:
    """Store a new version of a Patient of ``organization_id`` and its demographics; 412 on a stale version.

    ECGs already analysed keep the age and sex they were analysed with (their results say so);
    ECGs received from now on use the new demographics.
    """
    birth_date = content.get("birthDate") or ""
    if birth_date:
        date_range(birth_date, expression="Patient.birthDate")
    resource = fhir_resource_update(
        resource_type="Patient",
        logical_id=logical_id,
        content=content,
        source=source,
        expected_version=expected_version,
        organization_id=organization_id,
    )
    patient = Patient.objects.get(logical_id=logical_id, organization_id=organization_id)
    patient.gender, patient.birth_date = content.get("gender") or "", birth_date
    patient.full_clean(exclude=["resource", "organization"])
    patient.save(update_fields=["gender", "birth_date", "updated_at"])
    return resource


def _subject_patient(content: dict[str, Any], organization_id: int) -> Patient | None:
    """Return the Patient the Observation's subject points to; 422 when it does not resolve.

    Only the sender's organisation's Patients resolve: another tenant's reads as unknown, so an ECG
    can never be attached to (and shown with) another organisation's patient.
    """
    subject = content.get("subject")
    if not subject:
        return None
    reference = str(subject.get("reference") or "")
    reference = reference.removeprefix(settings.PUBLIC_BASE_URL + "/fhir/")
    if not reference.startswith("Patient/"):
        raise FhirError.single(
            422,
            "not-supported",
            f"subject {reference or '(no reference)'!r} must reference a Patient",
            "Observation.subject",
        )
    patient = Patient.objects.filter(
        logical_id=reference.removeprefix("Patient/"), organization_id=organization_id
    ).first()
    if patient is None:
        raise FhirError.single(
            422,
            "not-found",
            f"subject {reference!r} does not resolve to a Patient on this server",
            "Observation.subject",
        )
    return patient


def _demographics(
    patient: Patient | None, effective: str | None, fallback: tuple[str, str] = ("", "")
) -> dict[str, Any]:
    """Return sex and age at the ECG; ``fallback`` (gender, birthDate from an ECG document) fills what the Patient lacks."""
    gender = (patient.gender if patient else "") or fallback[0]
    birth_date = (patient.birth_date if patient else "") or fallback[1]
    ages = None
    if birth_date and effective:
        ages = age_range_years(birth_date, date_range(effective)[0])
    return {
        "sex": gender,
        "age_min_years": ages[0] if ages else None,
        "age_max_years": ages[1] if ages else None,
    }


def _effective(content: dict[str, Any]) -> str | None:
    value = content.get("effectiveDateTime") or (content.get("effectivePeriod") or {}).get("start")
    if value:
        date_range(value, expression="Observation.effective")
    return value


def ecg_prepare(*, content: dict[str, Any]) -> DecodedEcg:
    """Check that an Observation is an ECG and decode its waveform (CPU work, no database).

    Done before the database transaction opens so that no lock is held while decoding.
    """
    if not is_ecg_code((content.get("code") or {}).get("coding") or []):
        raise FhirError.single(
            422,
            "not-supported",
            "only ECG Observations (LOINC 11524-6 or 34534-8, or MDC 131328) are accepted",
            "Observation.code",
        )
    return ecg_decode(content)


@transaction.atomic
def ecg_recording_create(
    *,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    decoded: DecodedEcg | None = None,
    document_demographics: tuple[str, str] = ("", ""),
) -> EcgRecording:
    """Store an ECG Observation of ``organization_id``: the resource and its decoded waveform.

    Raises FhirError (nothing stored) when the Observation is not an ECG, its subject does not
    resolve, or its waveform fails decoding or the acceptance limits. ``document_demographics``
    (gender, birthDate) from a source ECG document are used where the Patient lacks them.
    """
    decoded = decoded or ecg_prepare(content=content)
    patient = _subject_patient(content, organization_id)
    effective = _effective(content)
    resource = fhir_resource_store(
        resource_type="Observation", content=content, source=source, organization_id=organization_id
    )
    samples = np.ascontiguousarray(decoded.samples_uv, dtype="<f4").tobytes()
    recording = EcgRecording.objects.create(
        resource=resource,
        logical_id=resource.logical_id,
        organization_id=organization_id,
        patient=patient,
        effective_at=date_range(effective)[0] if effective else None,
        sample_rate_hz=decoded.sample_rate_hz,
        leads=list(decoded.leads),
        n_samples=decoded.samples_uv.shape[1],
        samples=samples,
        quality=decoded.quality,
        waveform_sha256=hashlib.sha256(samples).hexdigest(),
        received_from=source,
        **_demographics(patient, effective, document_demographics),
    )
    return recording
