"""Bulk Data export over HTTP (FHIR Bulk Data Access IG v2): kick-off, status, cancel, download.

The work is in ``cds.fhir.bulk``; these views check headers and scopes, and render the IG's answers.
Only the client that kicked an export off may poll it and fetch its files (``requiresAccessToken``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.utils.http import http_date
from rest_framework.request import Request
from rest_framework.views import APIView

from cds.core.exceptions import FhirError
from cds.core.responses import fhir_response
from cds.fhir.audit import audit_api_access
from cds.fhir.bulk import bulk_export_cancel, bulk_export_get, bulk_export_start, export_directory, export_params_parse
from cds.fhir.dates import fhir_instant
from cds.fhir.models import BulkExport
from cds.fhir.validation import READABLE_TYPES
from cds.fhirapi.apis import FhirApi
from cds.oauth.scopes import require_scope, scope_allows_read
from cds.oauth.tenancy import request_organization_id

NDJSON = "application/fhir+ndjson"


def _base() -> str:
    return f"{settings.PUBLIC_BASE_URL}/fhir"


def _client_id(request: Request) -> str:
    return str(getattr(request.user, "client_id", ""))


class ExportKickoffApi(FhirApi):
    """``GET /fhir/$export``: start a system-level export; 202 with the status URL in ``Content-Location``."""

    def get(self, request: Request) -> HttpResponse:
        prefer = request.headers.get("Prefer", "")
        if "respond-async" not in prefer:
            raise FhirError.single(400, "invalid", "$export is asynchronous: send Prefer: respond-async", "Prefer")
        organization_id = request_organization_id(request)
        params = [(k, v) for k, values in request.GET.lists() for v in values]
        parsed = export_params_parse(params, lenient="handling=lenient" in prefer)
        if parsed.types is not None:
            # Asked for by name: a type the token cannot read is refused, not silently left out.
            for resource_type in parsed.types:
                require_scope(request, resource_type, "r")
            types = parsed.types
        else:
            # No _type: every type the client may read (the IG: "within the scope of the client authorization").
            types = [t for t in READABLE_TYPES if scope_allows_read(request, t)]
            if not types:
                raise FhirError.single(403, "forbidden", "scope allows reading no resource type; $export needs r")
        query = urlencode(params)
        export = bulk_export_start(
            organization_id=organization_id,
            client_id=_client_id(request),
            request_url=f"{_base()}/$export" + (f"?{query}" if query else ""),
            types=types,
            since=parsed.since,
        )
        audit_api_access(
            client_id=_client_id(request),
            interaction="export-kickoff",
            what=f"$export {export.pk}",
            query=query,
            resource_pks=[],
        )
        outcome = None
        if parsed.ignored:
            outcome = {"resourceType": "OperationOutcome", "issue": [i.as_fhir() for i in parsed.ignored]}
        return fhir_response(outcome, status=202, headers={"Content-Location": f"{_base()}/$export-status/{export.pk}"})


def _manifest(export: BulkExport) -> dict[str, Any]:
    return {
        "transactionTime": fhir_instant(export.transaction_time),
        "request": export.request_url,
        "requiresAccessToken": True,
        "output": [
            {
                "type": entry["type"],
                "url": f"{_base()}/$export-file/{export.pk}/{entry['file']}",
                "count": entry["count"],
            }
            for entry in export.output
        ],
        "error": [],
    }


class ExportStatusApi(FhirApi):
    """``GET /fhir/$export-status/{id}``: 202 while running, 200 with the manifest, 500 when it failed."""

    def get(self, request: Request, export_id: uuid.UUID) -> HttpResponse:
        export = bulk_export_get(
            export_id=export_id, client_id=_client_id(request), organization_id=request_organization_id(request)
        )
        if export.status == BulkExport.Status.FAILED:
            raise FhirError.single(500, "exception", export.error or "the export failed")
        if export.status != BulkExport.Status.COMPLETED:
            response = HttpResponse(status=202)
            response["X-Progress"] = export.progress or export.status
            response["Retry-After"] = str(settings.BULK_EXPORT_RETRY_AFTER_S)
            return response
        body = json.dumps(_manifest(export), separators=(",", ":")).encode()
        response = HttpResponse(body, status=200, content_type="application/json")
        if export.expires_at is not None:
            response["Expires"] = http_date(export.expires_at.timestamp())
        return response


class ExportCancelApi(FhirApi):
    """``DELETE /fhir/$export-status/{id}``: cancel the export and delete its files (202)."""

    def delete(self, request: Request, export_id: uuid.UUID) -> HttpResponse:
        bulk_export_cancel(
            export_id=export_id, client_id=_client_id(request), organization_id=request_organization_id(request)
        )
        audit_api_access(
            client_id=_client_id(request), interaction="export-cancel", what=f"$export {export_id}", resource_pks=[]
        )
        outcome = {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "information", "code": "informational", "diagnostics": "export cancelled"}],
        }
        return fhir_response(outcome, status=202)


class ExportFileApi(FhirApi):
    """``GET /fhir/$export-file/{id}/{name}``: one NDJSON file of a completed export, streamed."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # Clients ask for application/fhir+ndjson here, which the FHIR JSON Accept check would refuse.
        APIView.initial(self, request, *args, **kwargs)

    def get(self, request: Request, export_id: uuid.UUID, file_name: str) -> FileResponse:
        export = bulk_export_get(
            export_id=export_id, client_id=_client_id(request), organization_id=request_organization_id(request)
        )
        # Only names the manifest lists: the name never reaches the file system unchecked.
        types = {entry["file"]: entry["type"] for entry in export.output}
        if export.status != BulkExport.Status.COMPLETED or file_name not in types:
            raise FhirError.single(404, "not-found", f"file {file_name[:80]!r} is not part of a completed export")
        # Scopes withdrawn since the kick-off stop downloads too (the token's scopes are re-read per request).
        require_scope(request, types[file_name], "r")
        audit_api_access(
            client_id=_client_id(request),
            interaction="export-download",
            what=f"$export {export.pk} {file_name}",
            resource_pks=[],
        )
        try:
            handle = (export_directory(export.pk) / file_name).open("rb")
        except FileNotFoundError:  # expired and swept between the check and the read
            raise FhirError.single(404, "not-found", f"file {file_name!r} has expired") from None
        return FileResponse(handle, content_type=NDJSON)
