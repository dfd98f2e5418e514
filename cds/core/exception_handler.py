"""The one DRF exception handler: OperationOutcome on FHIR routes, ``{message, extra}`` elsewhere."""

from __future__ import annotations

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from cds.core.exceptions import ApplicationError, FhirError
from cds.core.responses import fhir_response, operation_outcome

logger = logging.getLogger(__name__)

_FHIR_CODE_BY_DRF: list[tuple[type[Exception], str]] = [
    (drf.NotAuthenticated, "login"),
    (drf.AuthenticationFailed, "login"),
    (drf.PermissionDenied, "forbidden"),
    (drf.NotFound, "not-found"),
    (drf.MethodNotAllowed, "not-supported"),
    (drf.NotAcceptable, "not-supported"),
    (drf.UnsupportedMediaType, "not-supported"),
    (drf.Throttled, "throttled"),
    (drf.ParseError, "structure"),
    (drf.ValidationError, "invalid"),
]


def _as_fhir_error(exc: Exception) -> FhirError:
    if isinstance(exc, FhirError):
        return exc
    if isinstance(exc, Http404):
        return FhirError.single(404, "not-found", str(exc) or "not found")
    if isinstance(exc, DjangoPermissionDenied):
        return FhirError.single(403, "forbidden", str(exc) or "forbidden")
    if isinstance(exc, drf.APIException):
        code = next((c for cls, c in _FHIR_CODE_BY_DRF if isinstance(exc, cls)), "processing")
        headers = {}
        if getattr(exc, "auth_header", None):
            headers["WWW-Authenticate"] = exc.auth_header  # type: ignore[attr-defined]
        if getattr(exc, "wait", None):
            headers["Retry-After"] = str(int(exc.wait))  # type: ignore[attr-defined]
        return FhirError.single(exc.status_code, code, str(exc.detail), headers=headers)
    if isinstance(exc, ApplicationError):
        return FhirError.single(exc.http_status, "processing", exc.message)
    # Unexpected: the request is a boundary, so log the traceback and answer 500 without details.
    logger.error("unhandled error on a FHIR route", exc_info=exc)
    return FhirError.single(500, "exception", "internal error; the request was not applied")


def handle_exception(exc: Exception, context: dict[str, Any]) -> HttpResponse | None:
    """Render an exception raised by a DRF view."""
    request = context.get("request")
    if request is not None and request.path.startswith("/fhir"):
        error = _as_fhir_error(exc)
        return fhir_response(operation_outcome(error), status=error.status, headers=error.headers)
    if isinstance(exc, ApplicationError):
        return Response({"message": exc.message, "extra": exc.extra}, status=exc.http_status)
    return drf_exception_handler(exc, context)
