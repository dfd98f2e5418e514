"""The CDS Hooks fallback when prefetch is missing: read the Patient from the EHR's ``fhirServer``.

CDS Hooks 2.0: a service that did not get its prefetch may query ``fhirServer`` with the access
token in ``fhirAuthorization``; when it can get the data neither way it answers 412 Precondition
Failed. We read only ``{fhirServer}/Patient/{patientId}``, only from a base registered for the
calling client (an unregistered base is a 400: otherwise any caller could make us send requests
anywhere), with a short timeout, no redirects followed and a size cap.
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests
from django.conf import settings

from cds.core.exceptions import ApplicationError
from cds.hooks.ehr_http import bounded_get
from cds.hooks.models import fhir_base_normalize

_MAX_PATIENT_BYTES = 1024 * 1024  # a Patient is a few kB; a larger answer is not one
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class HookPreconditionFailed(ApplicationError):
    """Raise when the data the hook needs can be got neither from prefetch nor from the FHIR server."""

    http_status = 412


def prefetched_or_fetched_patient(
    *, request: dict[str, Any], fhir_servers: tuple[str, ...] | None
) -> dict[str, Any] | None:
    """Return the Patient the hook matches on: ``prefetch.patient``, else read from ``fhirServer``.

    ``fhir_servers`` None means the caller is not a CDS client (one of our own access tokens): no
    fallback, the prefetched Patient or None as before. Raises ``ApplicationError`` (400) for an
    unusable ``fhirServer``/``fhirAuthorization``/``patientId``, ``HookPreconditionFailed`` (412)
    when there is neither a prefetched Patient nor a ``fhirAuthorization``, or the EHR's FHIR
    server does not answer with the Patient.
    """
    prefetch = request.get("prefetch") or {}
    patient = prefetch.get("patient")
    if isinstance(patient, dict) and patient.get("resourceType") == "Patient":
        return patient
    if fhir_servers is None:
        return patient if isinstance(patient, dict) else None
    authorization = request.get("fhirAuthorization")
    if authorization is None:
        raise HookPreconditionFailed(
            "prefetch.patient is missing and the request has no fhirAuthorization to read "
            "Patient/{context.patientId} from fhirServer with"
        )
    token = _access_token(authorization)
    server = request.get("fhirServer")
    if not isinstance(server, str) or not server:
        raise ApplicationError("fhirServer is required with fhirAuthorization")
    if fhir_base_normalize(server) not in {fhir_base_normalize(base) for base in fhir_servers}:
        raise ApplicationError(f"fhirServer {server[:200]!r} is not a FHIR server registered for this CDS client")
    patient_id = str((request.get("context") or {}).get("patientId", ""))
    if not _FHIR_ID.fullmatch(patient_id):
        raise ApplicationError("context.patientId is not a FHIR id ([A-Za-z0-9-.], 1 to 64 characters)")
    return _read_patient(base=fhir_base_normalize(server), patient_id=patient_id, token=token)


def _access_token(authorization: Any) -> str:
    """Return the bearer token of a usable ``fhirAuthorization``; ``ApplicationError`` (400) naming the member."""
    if not isinstance(authorization, dict):
        raise ApplicationError("fhirAuthorization must be an object")
    token = authorization.get("access_token")
    if not isinstance(token, str) or not token or any(c in token for c in "\r\n\x00"):
        raise ApplicationError("fhirAuthorization.access_token is required")
    if not isinstance(authorization.get("token_type"), str) or authorization["token_type"].lower() != "bearer":
        raise ApplicationError("fhirAuthorization.token_type must be 'Bearer'")
    expires_in = authorization.get("expires_in")
    if not isinstance(expires_in, int) or isinstance(expires_in, bool) or expires_in <= 0:
        raise ApplicationError("fhirAuthorization.expires_in must be a positive integer (seconds)")
    for member in ("scope", "subject"):
        if not isinstance(authorization.get(member), str) or not authorization[member]:
            raise ApplicationError(f"fhirAuthorization.{member} is required")
    return token


def _read_patient(*, base: str, patient_id: str, token: str) -> dict[str, Any]:
    """GET ``{base}/Patient/{patient_id}``; ``HookPreconditionFailed`` (412) for anything but that Patient."""
    url = f"{base}/Patient/{patient_id}"
    try:
        status, body = bounded_get(
            url,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"},
            timeout_s=settings.CDS_HOOKS_FHIR_TIMEOUT_S,
            max_bytes=_MAX_PATIENT_BYTES,
        )
    except requests.RequestException as exc:
        raise HookPreconditionFailed(f"the EHR's FHIR server could not be reached ({type(exc).__name__})") from exc
    if status != 200:
        raise HookPreconditionFailed(f"the EHR's FHIR server answered HTTP {status} to GET Patient/{patient_id}")
    if len(body) > _MAX_PATIENT_BYTES:
        raise HookPreconditionFailed(f"the EHR's Patient is larger than {_MAX_PATIENT_BYTES} bytes")
    try:
        patient = json.loads(body)
    except ValueError as exc:
        raise HookPreconditionFailed("the EHR's FHIR server did not answer JSON for the Patient") from exc
    if not isinstance(patient, dict) or patient.get("resourceType") != "Patient":
        raise HookPreconditionFailed("the EHR's FHIR server did not answer a Patient")
    return patient
