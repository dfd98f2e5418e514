"""Response headers every page and API answer carries (issue 7, docs/security.md).

Django's ``SecurityMiddleware`` and ``XFrameOptionsMiddleware`` add nosniff, Referrer-Policy,
Cross-Origin-Opener-Policy, HSTS and X-Frame-Options from settings; this adds what Django lacks:

- ``Content-Security-Policy``: nothing but our own origin on pages (the admin and review pages
  need no third party; the review page's SVG ECGs use inline style attributes and data: images),
  and nothing at all on API answers, which are data, never documents;
- ``Cache-Control: no-store`` on API answers: FHIR resources, CDS cards and tokens carry PHI or
  credentials and must not stay in a browser or proxy cache.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponseBase

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
