"""Render FHIR responses and errors as OperationOutcome (docs/style.md G4).

Beside the error hierarchy, in the lowest layer, because the one exception handler and the
middleware render FhirError on every FHIR route.
"""

from __future__ import annotations

import json
from typing import Any

from django.http import HttpResponse

from cds.core.exceptions import FhirError

FHIR_JSON = "application/fhir+json"


def fhir_response(
    body: dict[str, Any] | None, *, status: int = 200, headers: dict[str, str] | None = None
) -> HttpResponse:
    """Return a response with a FHIR JSON body (or none for ``Prefer: return=minimal``)."""
    content = b"" if body is None else json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    response = HttpResponse(content, status=status, content_type=f"{FHIR_JSON}; charset=utf-8")
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def operation_outcome(error: FhirError) -> dict[str, Any]:
    """Return the OperationOutcome for an error."""
    return {"resourceType": "OperationOutcome", "issue": [issue.as_fhir() for issue in error.issues]}
