"""Security middleware (issue 7, docs/security.md): response headers and a NUL-character guard.

``SecurityHeadersMiddleware`` adds the headers Django's ``SecurityMiddleware`` and
``XFrameOptionsMiddleware`` lack (those add nosniff, Referrer-Policy, Cross-Origin-Opener-Policy,
HSTS and X-Frame-Options from settings):

- ``Content-Security-Policy``: nothing but our own origin on pages (the admin and review pages
  need no third party; the review page's SVG ECGs use inline style attributes and data: images),
  and nothing at all on API answers, which are data, never documents;
- ``Cache-Control: no-store`` on API answers: FHIR resources, CDS cards and tokens carry PHI or
  credentials and must not stay in a browser or proxy cache.

``RejectNulMiddleware`` refuses NUL characters, which PostgreSQL cannot store, at the edge.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase, JsonResponse

from cds.core.exceptions import FhirError
from cds.core.responses import fhir_response, operation_outcome

PAGE_POLICY = (
    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)
API_POLICY = "default-src 'none'; frame-ancestors 'none'; sandbox"
# Paths that answer data: the FHIR API, OAuth2, SMART discovery, CDS Hooks and the OpenAPI description.
API_PREFIXES = ("/fhir", "/auth/", "/.well-known/", "/cds-services", "/openapi.")


def is_api_path(path: str) -> bool:
    """Return whether ``path`` is one of the data (non-page) routes."""
    return path.startswith(API_PREFIXES)


class SecurityHeadersMiddleware:
    """Add ``Content-Security-Policy`` to every response and ``Cache-Control: no-store`` to API ones.

    A view that set its own Content-Security-Policy keeps it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        api = is_api_path(request.path)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = API_POLICY if api else PAGE_POLICY
        if api:
            response["Cache-Control"] = "no-store"
        return response


class RejectNulMiddleware:
    """Answer 400 for a request whose path, query or JSON body holds U+0000 (NUL).

    PostgreSQL ``text`` and ``jsonb`` cannot store NUL, so such a value reaching a query or an
    insert is a database error (500) wherever it is used, in FHIR search, FHIR create, CDS Hooks and
    client lookups alike; one check at the edge refuses it for all of them. FHIR routes get an
    OperationOutcome (``code`` invalid, ``expression`` the element or search parameter), the others
    ``{message, extra}``. Bodies are scanned as bytes first (a raw NUL or the ``\\u0000`` escape),
    so only the rare suspect body is parsed here.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        problem = _nul_problem(request)
        if problem is None:
            return self.get_response(request)
        where, diagnostics = problem
        if request.path.startswith("/fhir"):
            error = FhirError.single(400, "invalid", diagnostics, expression=where)
            return fhir_response(operation_outcome(error), status=400)
        return JsonResponse({"message": diagnostics, "extra": {"where": where}}, status=400)


def _nul_problem(request: HttpRequest) -> tuple[str | None, str] | None:
    """Return ``(where, diagnostics)`` for the first NUL in the request, or None."""
    if "\x00" in request.path:
        return None, "the URL path contains a NUL character"
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            return name.replace("\x00", "") or None, f"search parameter {name!r} contains a NUL character"
    if "json" not in (request.content_type or "") or request.method not in {"POST", "PUT", "PATCH"}:
        return None
    length = int(request.META.get("CONTENT_LENGTH") or 0)
    if length > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return None  # the view answers 413 before it stores anything
    body = request.body
    if b"\x00" not in body and b"\\u0000" not in body:
        return None
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None  # not JSON at all, or nested too deep: the view's parser refuses it (400)
    path = _nul_path(parsed, parsed.get("resourceType") if isinstance(parsed, dict) else None)
    if path is None:
        return None  # the escape was itself escaped (a backslash then "u0000"): no NUL
    return path, f"{path} contains a NUL character, which cannot be stored"


def _nul_path(value: Any, path: str | None) -> str | None:
    """Return the FHIRPath-like location of the first string (value or key) in ``value`` holding NUL.

    Walks with an explicit stack (depth-first, document order): a deeply nested body must not
    exhaust Python's recursion limit here (a 500) before the view refuses it.
    """
    stack: list[tuple[Any, str]] = [(value, path if isinstance(path, str) and path else "$this")]
    while stack:
        node, here = stack.pop()
        if isinstance(node, str):
            if "\x00" in node:
                return here
        elif isinstance(node, dict):
            for key in node:
                if "\x00" in key:
                    return f"{here}.{key.replace(chr(0), '')}"
            stack.extend((item, f"{here}.{key}") for key, item in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend((item, f"{here}[{index}]") for index, item in reversed(list(enumerate(node))))
    return None
