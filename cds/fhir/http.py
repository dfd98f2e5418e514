"""FHIR over HTTP: media types, ``_format``, body limits and JSON responses."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from cds.core.exceptions import FhirError
from cds.core.nul import body_nul_path
from cds.core.responses import FHIR_JSON

# Clients commonly send plain JSON; the DSTU2 spelling still appears in older integration engines.
ACCEPTED_BODY_TYPES = frozenset({FHIR_JSON, "application/json", "application/json+fhir"})
_JSON_FORMATS = frozenset({"json", FHIR_JSON, "application/json", "application/json+fhir"})


def check_response_format(request: HttpRequest) -> None:
    """Refuse (406) a ``_format`` or ``Accept`` that asks only for something other than JSON."""
    fmt = request.GET.get("_format")
    if fmt is not None:
        if fmt.split(";")[0].strip() not in _JSON_FORMATS:
            raise FhirError.single(406, "not-supported", f"_format={fmt!r} is not supported; use json", "_format")
        return
    accept = request.headers.get("Accept", "")
    if not accept:
        return
    types = [part.split(";")[0].strip() for part in accept.split(",")]
    if not any(t in _JSON_FORMATS or t in {"*/*", "application/*"} for t in types):
        raise FhirError.single(406, "not-supported", f"Accept {accept!r} offers no JSON type we can answer with")


class _NonFiniteNumber(ValueError):
    pass


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity literals; JSON and FHIR do not.
    raise _NonFiniteNumber(name)


def parse_body(request: HttpRequest, *, max_bytes: int | None = None) -> dict[str, Any]:
    """Return the request body as a JSON object, enforcing media type, size and the absence of NUL.

    ``max_bytes`` defaults to ``FHIR_MAX_BODY_BYTES`` (Bundles); single resources pass the lower
    ``FHIR_MAX_RESOURCE_BYTES``. The Content-Length is checked before a byte is read. Views call this
    after authentication, so nobody without a token makes us read, parse or scan a body.
    Raises FhirError: 413 above the limit, 415 for a non-JSON media type, 400 for malformed JSON, a
    body that is not an object, or a NUL character (named by its element).
    """
    limit = settings.FHIR_MAX_BODY_BYTES if max_bytes is None else max_bytes
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise FhirError.single(400, "structure", "Content-Length is not a number") from None
    if length > limit:
        raise FhirError.single(413, "too-costly", f"body of {length} bytes exceeds the limit of {limit} bytes")
    media_type = (request.content_type or "").lower()
    if media_type not in ACCEPTED_BODY_TYPES:
        raise FhirError.single(
            415, "not-supported", f"Content-Type {media_type or '(none)'!r} is not supported; send {FHIR_JSON}"
        )
    body = request.body
    if len(body) > limit:
        raise FhirError.single(413, "too-costly", f"body exceeds the limit of {limit} bytes")
    try:
        parsed = json.loads(body, parse_constant=_reject_constant)
    except _NonFiniteNumber as exc:
        raise FhirError.single(400, "value", f"JSON contains {exc.args[0]}, which is not a valid FHIR number") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FhirError.single(400, "structure", f"body is not valid JSON: {exc}") from None
    except RecursionError:
        # json's C parser recurses per nesting level: a body nested thousands deep is no resource.
        raise FhirError.single(400, "structure", "body is nested too deeply to be a FHIR resource") from None
    if not isinstance(parsed, dict):
        raise FhirError.single(400, "structure", "body must be a JSON object (a FHIR resource)")
    where = body_nul_path(body, parsed)
    if where is not None:
        raise FhirError.single(400, "invalid", f"{where} contains a NUL character, which cannot be stored", where)
    return parsed
