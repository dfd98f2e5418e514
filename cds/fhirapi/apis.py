"""FHIR REST interactions: one APIView per operation, each validate → service/selector → render."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import http_date
from django.views.decorators.csrf import csrf_exempt
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.views import APIView

from cds.core.exceptions import FhirError
from cds.core.responses import fhir_response, operation_outcome
from cds.fhir.audit import audit_api_access
from cds.fhir.capability import capability_statement
from cds.fhir.http import check_response_format, parse_body
from cds.fhir.models import StoredResource
from cds.fhir.searchset import searchset
from cds.fhir.selectors import resource_read
from cds.fhir.shaping import refuse_subsetted
from cds.fhir.validation import READABLE_TYPES, SUPPORTED_TYPES, resource_validate
from cds.fhirapi.bundles import bundle_process
from cds.fhirapi.creators import resource_create, resource_update
from cds.oauth.scopes import require_conditional_scope, require_scope, scope_allows_read
from cds.oauth.tenancy import request_organization_id


def resource_headers(resource: StoredResource) -> dict[str, str]:
    """Return ``Location``, ``ETag`` and ``Last-Modified`` for a stored version."""
    return {
        "Location": f"{settings.PUBLIC_BASE_URL}/fhir/{resource.reference}/_history/{resource.version_id}",
        "ETag": f'W/"{resource.version_id}"',
        "Last-Modified": http_date(resource.last_updated.timestamp()),
    }


def _known_type(resource_type: str, *, create: bool = False) -> None:
    if resource_type not in READABLE_TYPES:
        raise FhirError.single(404, "not-supported", f"resource type {resource_type!r} is not served here")
    if create and resource_type not in SUPPORTED_TYPES:
        raise FhirError.single(
            405, "not-supported", f"{resource_type} is written by the service itself; clients may read and search it"
        )


class FhirContentNegotiation(BaseContentNegotiation):
    """Skip DRF's negotiation: FHIR views render JSON themselves and check ``_format``/``Accept``."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class FhirApi(APIView):
    """Base for FHIR views: JSON only, CSRF-exempt (token-authenticated API)."""

    content_negotiation_class = FhirContentNegotiation

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        check_response_format(request)


class MetadataApi(FhirApi):
    """``GET /fhir/metadata``: the CapabilityStatement (public, as SMART discovery requires)."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]

    def get(self, request: Request) -> HttpResponse:
        return fhir_response(capability_statement())


class ResourceCreateApi(FhirApi):
    """``POST /fhir/{type}``: create, or conditional create with ``If-None-Exist``."""

    def post(self, request: Request, resource_type: str) -> HttpResponse:
        _known_type(resource_type, create=True)
        require_scope(request, resource_type, "c")
        if_none_exist = request.headers.get("If-None-Exist")
        if if_none_exist:
            require_conditional_scope(request, resource_type)
        organization_id = request_organization_id(request)
        content = parse_body(request, max_bytes=settings.FHIR_MAX_RESOURCE_BYTES)
        resource_validate(content, expected_type=resource_type)
        outcome = resource_create(
            resource_type=resource_type,
            content=content,
            source=getattr(request.user, "client_id", ""),
            organization_id=organization_id,
            if_none_exist=if_none_exist,
        )
        body = None if "return=minimal" in request.headers.get("Prefer", "") else outcome.resource.content
        if not outcome.created and not scope_allows_read(request, resource_type):
            body = None  # a resent ECG: a create-only client learns where it is, not what is stored
        return fhir_response(body, status=201 if outcome.created else 200, headers=resource_headers(outcome.resource))


class ResourceSearchApi(FhirApi):
    """``GET /fhir/{type}?...``: a searchset Bundle (strict unless ``Prefer: handling=lenient``)."""

    def get(self, request: Request, resource_type: str) -> HttpResponse:
        _known_type(resource_type)
        require_scope(request, resource_type, "s")
        organization_id = request_organization_id(request)
        params = [(k, v) for k, values in request.GET.lists() for v in values]
        lenient = "handling=lenient" in request.headers.get("Prefer", "")
        result = searchset(resource_type=resource_type, params=params, organization_id=organization_id, lenient=lenient)
        audit_api_access(
            client_id=getattr(request.user, "client_id", ""),
            interaction="search-type",
            what=resource_type,
            query=urlencode(params),
            resource_pks=[r.pk for r in result.resources],
        )
        return fhir_response(result.bundle)


class ResourceReadApi(FhirApi):
    """``GET /fhir/{type}/{id}`` and ``.../_history/{vid}`` (read and vread)."""

    def get(self, request: Request, resource_type: str, logical_id: str, version_id: int | None = None) -> HttpResponse:
        _known_type(resource_type)
        require_scope(request, resource_type, "r")
        resource = resource_read(
            resource_type=resource_type,
            logical_id=logical_id,
            organization_id=request_organization_id(request),
            version_id=version_id,
        )
        audit_api_access(
            client_id=getattr(request.user, "client_id", ""),
            interaction="vread" if version_id is not None else "read",
            what=resource.reference,
            resource_pks=[resource.pk],
        )
        headers = resource_headers(resource)
        del headers["Location"]
        if request.headers.get("If-None-Match") == headers["ETag"]:
            return fhir_response(None, status=304, headers=headers)
        return fhir_response(resource.content, headers=headers)


def _if_match_version(request: Request) -> int | None:
    """Return the version an ``If-Match: W/"n"`` names; None without the header; 400 when unreadable."""
    header = request.headers.get("If-Match")
    if header is None:
        return None
    value = header.strip().removeprefix("W/").strip('"')
    if not value.isascii() or not value.isdigit() or len(value) > 9:
        raise FhirError.single(400, "value", f'If-Match {header[:40]!r} is not an ETag this server issued (W/"n")')
    return int(value)


class ResourceUpdateApi(FhirApi):
    """``PUT /fhir/{type}/{id}``: update a Patient, or retract an ECG; ``If-Match`` makes it version-aware (412)."""

    def put(self, request: Request, resource_type: str, logical_id: str) -> HttpResponse:
        _known_type(resource_type, create=True)
        require_scope(request, resource_type, "u")
        expected_version = _if_match_version(request)
        content = parse_body(request)
        resource_validate(content, expected_type=resource_type)
        refuse_subsetted(content, resource_type)
        if content.get("id") != logical_id:
            raise FhirError.single(
                400,
                "invalid",
                f"the body's id {content.get('id')!r} must be the URL's {logical_id!r}",
                f"{resource_type}.id",
            )
        resource = resource_update(
            resource_type=resource_type,
            logical_id=logical_id,
            content=content,
            source=getattr(request.user, "client_id", ""),
            organization_id=request_organization_id(request),
            expected_version=expected_version,
        )
        headers = resource_headers(resource)
        body = None if "return=minimal" in request.headers.get("Prefer", "") else resource.content
        return fhir_response(body, headers=headers)


class BundleProcessApi(FhirApi):
    """``POST /fhir``: a ``transaction`` (all-or-nothing) or ``batch`` Bundle."""

    def post(self, request: Request) -> HttpResponse:
        content = parse_body(request)
        resource_validate_bundle_type(content)
        response_bundle, status = bundle_process(bundle=content, request=request)
        return fhir_response(response_bundle, status=status)


def resource_validate_bundle_type(content: dict[str, Any]) -> None:
    """Refuse anything but a transaction or batch Bundle at the system endpoint."""
    if content.get("resourceType") != "Bundle":
        raise FhirError.single(
            400, "invalid", f"POST [base] takes a Bundle, got {content.get('resourceType')!r}", "resourceType"
        )
    bundle_type = content.get("type")
    if not isinstance(bundle_type, str) or bundle_type not in {"transaction", "batch"}:
        raise FhirError.single(
            422,
            "not-supported",
            f"Bundle.type {content.get('type')!r} is not processed; use transaction or batch",
            "Bundle.type",
        )


def by_method(**views: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Route one URL to one view per HTTP method (one APIView per operation, docs/style.md G3)."""

    @csrf_exempt
    def route(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        view = views.get(request.method or "", views.get("*"))
        if view is None:
            error = FhirError.single(405, "not-supported", f"{request.method} is not supported on this URL")
            return fhir_response(operation_outcome(error), status=405, headers={"Allow": ", ".join(views)})
        return view(request, *args, **kwargs)

    return route
