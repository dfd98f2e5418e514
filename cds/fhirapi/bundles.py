"""Process ``transaction`` (all-or-nothing) and ``batch`` Bundles posted to ``[base]``."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.http import http_date

from cds.core.exceptions import FhirError, FhirIssue
from cds.core.responses import operation_outcome
from cds.fhir.references import rewrite_references
from cds.fhir.services import conditional_match
from cds.fhir.validation import resource_validate
from cds.fhirapi.creators import identity_query, resource_creator, resource_prepare
from cds.oauth.scopes import require_conditional_scope, require_scope
from cds.oauth.tenancy import request_organization_id

# A transaction runs in one database transaction: this many entries keeps it (and its locks) short.
MAX_BUNDLE_ENTRIES = 200
# Referenced resources first, so an Observation's subject exists when it is created.
_CREATE_ORDER = {"Patient": 0}


@dataclass
class _Entry:
    index: int
    resource_type: str
    content: dict[str, Any]
    full_url: str | None
    if_none_exist: str | None
    prepared: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] | None = None

    @property
    def path(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _in_entry(error: FhirError, entry_path: str, resource_type: str | None) -> FhirError:
    """Re-anchor an error's expressions (``Observation.x``) inside the Bundle entry."""
    issues = []
    for issue in error.issues:
        expressions = []
        for expression in issue.expression:
            if resource_type and expression.startswith(resource_type):
                expressions.append(f"{entry_path}.resource{expression[len(resource_type) :]}")
            elif expression.startswith("Bundle."):
                expressions.append(expression)
            else:
                expressions.append(f"{entry_path}.{expression}")
        issues.append(
            FhirIssue(
                code=issue.code,
                diagnostics=f"{entry_path}: {issue.diagnostics}",
                expression=tuple(expressions),
                severity=issue.severity,
            )
        )
    return FhirError(status=error.status, issues=issues, headers=error.headers)


def _parse_entry(index: int, raw: Any, request: Any) -> _Entry:
    path = f"Bundle.entry[{index}]"
    if not isinstance(raw, dict):
        raise FhirError.single(400, "structure", "entry must be an object", path)
    entry_request = raw.get("request") or {}
    if not isinstance(entry_request, dict):
        raise FhirError.single(400, "structure", "request must be an object", f"{path}.request")
    for element in ("url", "ifNoneExist"):
        if element in entry_request and not isinstance(entry_request[element], str):
            raise FhirError.single(400, "structure", f"request.{element} must be a string", f"{path}.request.{element}")
    if "fullUrl" in raw and not isinstance(raw["fullUrl"], str):
        raise FhirError.single(400, "structure", "fullUrl must be a string", f"{path}.fullUrl")
    method = entry_request.get("method")
    url = str(entry_request.get("url") or "")
    content = raw.get("resource")
    if method != "POST":
        raise FhirError.single(
            422, "not-supported", f"request.method {method!r} is not supported; use POST", f"{path}.request.method"
        )
    if not isinstance(content, dict):
        raise FhirError.single(400, "required", "a POST entry needs a resource", f"{path}.resource")
    try:
        resource_type = resource_validate(content, expected_type=url.split("?")[0] or None, prefix=f"{path}.resource")
        require_scope(request, resource_type, "c")
        if entry_request.get("ifNoneExist"):
            require_conditional_scope(request, resource_type, f"{path}.request.ifNoneExist")
    except FhirError as error:
        raise _in_entry(error, path, None) if not error.issues[0].expression else error from None
    return _Entry(
        index=index,
        resource_type=resource_type,
        content=content,
        full_url=raw.get("fullUrl"),
        if_none_exist=entry_request.get("ifNoneExist"),
    )


def _check_unresolved(entry: _Entry) -> None:
    """Refuse a ``urn:uuid`` reference that names no entry of the Bundle."""
    stack: list[tuple[Any, str]] = [(entry.content, f"{entry.path}.resource")]
    while stack:
        node, where = stack.pop()
        if isinstance(node, dict):
            reference = node.get("reference")
            if isinstance(reference, str) and reference.startswith("urn:uuid:"):
                raise FhirError.single(
                    422, "not-found", f"reference {reference!r} names no entry of this Bundle", f"{where}.reference"
                )
            stack.extend((v, f"{where}.{k}") for k, v in node.items() if isinstance(v, (dict, list)))
        elif isinstance(node, list):
            stack.extend((v, f"{where}[{i}]") for i, v in enumerate(node))


def _created_response(resource: Any, created: bool) -> dict[str, Any]:
    return {
        "status": "201 Created" if created else "200 OK",
        "location": f"{resource.reference}/_history/{resource.version_id}",
        "etag": f'W/"{resource.version_id}"',
        "lastModified": http_date(resource.last_updated.timestamp()),
    }


def _apply(entries: list[_Entry], source: str, organization_id: int) -> None:
    """Create the entries' resources in ``organization_id``, in one transaction (the caller decides its scope)."""
    mapping: dict[str, str] = {}
    for entry in entries:
        existing = None
        query = entry.if_none_exist or identity_query(resource_type=entry.resource_type, content=entry.content)
        if query:
            existing = conditional_match(
                resource_type=entry.resource_type,
                query=query,
                expression=f"{entry.path}.request.ifNoneExist"
                if entry.if_none_exist
                else f"{entry.path}.resource.identifier",
                organization_id=organization_id,
            )
        if existing is not None:
            entry.response = _created_response(existing, created=False)
            if entry.full_url:
                mapping[entry.full_url] = existing.reference
        else:
            entry.content["id"] = uuid.uuid4().hex
            if entry.full_url:
                mapping[entry.full_url] = f"{entry.resource_type}/{entry.content['id']}"
    for entry in entries:
        rewrite_references(entry.content, mapping)
    for entry in sorted(entries, key=lambda e: (_CREATE_ORDER.get(e.resource_type, 1), e.index)):
        if entry.response is not None:
            continue
        _check_unresolved(entry)
        try:
            resource = resource_creator(entry.resource_type)(
                content=entry.content, source=source, organization_id=organization_id, **entry.prepared
            )
        except FhirError as error:
            raise _in_entry(error, entry.path, entry.resource_type) from None
        entry.response = _created_response(resource, created=True)


def _prepare(entry: _Entry) -> None:
    entry.content.pop("id", None)  # server-assigned, as for a plain create
    try:
        entry.prepared = resource_prepare(resource_type=entry.resource_type, content=entry.content)
    except FhirError as error:
        raise _in_entry(error, entry.path, entry.resource_type) from None


def bundle_process(*, bundle: dict[str, Any], request: Any) -> tuple[dict[str, Any], int]:
    """Process a transaction or batch Bundle; return the response Bundle and HTTP status.

    A transaction is all-or-nothing: any failing entry raises FhirError and nothing is stored. A
    batch applies each entry on its own and reports each entry's status.
    """
    source = getattr(request.user, "client_id", "")
    organization_id = request_organization_id(request)
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list) or not raw_entries:
        raise FhirError.single(400, "required", "Bundle has no entries", "Bundle.entry")
    if len(raw_entries) > MAX_BUNDLE_ENTRIES:
        # Before any entry is validated or decoded: each may carry a 12-lead waveform.
        raise FhirError.single(
            413, "too-costly", f"{len(raw_entries)} entries; at most {MAX_BUNDLE_ENTRIES} per Bundle", "Bundle.entry"
        )
    if bundle["type"] == "batch":
        return _batch(raw_entries, request, source, organization_id), 200
    entries = [_parse_entry(i, raw, request) for i, raw in enumerate(raw_entries)]
    for entry in entries:
        _prepare(entry)  # decode waveforms before the transaction opens
    with transaction.atomic():
        _apply(entries, source, organization_id)
    return _response_bundle("transaction-response", [e.response or {} for e in entries]), 200


def _batch(raw_entries: list[Any], request: Any, source: str, organization_id: int) -> dict[str, Any]:
    responses: list[dict[str, Any]] = []
    for index, raw in enumerate(raw_entries):
        try:
            entry = _parse_entry(index, raw, request)
            _prepare(entry)
            with transaction.atomic():
                _apply([entry], source, organization_id)
            responses.append(entry.response or {})
        except FhirError as error:
            responses.append({"status": str(error.status), "outcome": operation_outcome(error)})
    return _response_bundle("batch-response", responses)


def _response_bundle(bundle_type: str, responses: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "id": uuid.uuid4().hex,
        "type": bundle_type,
        "entry": [
            {"fullUrl": f"{settings.PUBLIC_BASE_URL}/fhir/{r['location'].split('/_history')[0]}", "response": r}
            if "location" in r
            else {"response": r}
            for r in responses
        ],
    }
