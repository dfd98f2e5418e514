"""Security middleware (issue 7, docs/security.md): response headers and a NUL-character guard.

``SecurityHeadersMiddleware`` adds the headers Django's ``SecurityMiddleware`` and
``XFrameOptionsMiddleware`` lack (those add nosniff, Referrer-Policy, Cross-Origin-Opener-Policy,
HSTS and X-Frame-Options from settings):

- ``Content-Security-Policy``: nothing but our own origin on pages (the admin and review pages
  need no third party; the review page's SVG ECGs use inline style attributes and data: images),
  and nothing at all on API answers, which are data, never documents;
- ``Cache-Control: no-store`` on API answers: FHIR resources, CDS cards and tokens carry PHI or
  credentials and must not stay in a browser or proxy cache.

``RejectNulMiddleware`` refuses NUL characters, which PostgreSQL cannot store, in paths and queries.
"""

from __future__ import annotations

from collections.abc import Callable

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
# Public, non-patient data that clients are meant to cache: the view's own Cache-Control stands.
CACHEABLE_PATHS = frozenset({"/.well-known/jwks.json"})


def is_api_path(path: str) -> bool:
    """Return whether ``path`` is one of the data (non-page) routes."""
    return path.startswith(API_PREFIXES)


class SecurityHeadersMiddleware:
    """Add ``Content-Security-Policy`` to every response and ``Cache-Control: no-store`` to API ones.

    The public JWKS (``CACHEABLE_PATHS``) keeps the short cache lifetime its view sets.

    A view that set its own Content-Security-Policy keeps it.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        api = is_api_path(request.path)
        if "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = API_POLICY if api else PAGE_POLICY
        if api and not (request.path in CACHEABLE_PATHS and "Cache-Control" in response):
            response["Cache-Control"] = "no-store"
        return response


class RejectNulMiddleware:
    """Answer 400 for a request whose path or query string holds U+0000 (NUL).

    PostgreSQL ``text`` and ``jsonb`` cannot store NUL, so such a value reaching a query is a
    database error (500) wherever it is used (FHIR search, reads, CDS Hooks, client lookups); one
    check at the edge refuses it for all of them. FHIR routes get an OperationOutcome (``code``
    invalid, ``expression`` the search parameter), the others ``{message, extra}``. Bodies are
    checked after authentication, where the view parses them (``cds.core.nul``): this middleware
    never reads a body.
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
    """Return ``(where, diagnostics)`` for the first NUL in the path or query, or None."""
    if "\x00" in request.path:
        return None, "the URL path contains a NUL character"
    for name, values in request.GET.lists():
        if "\x00" in name or any("\x00" in v for v in values):
            return name.replace("\x00", "") or None, f"search parameter {name!r} contains a NUL character"
    return None
