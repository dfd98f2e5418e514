"""Write FHIR resources: create (plain and conditional) and the shared storage step."""

from __future__ import annotations

import copy
import uuid
from typing import Any
from urllib.parse import parse_qsl

from django.db import connection, transaction
from django.utils import timezone

from cds.core.exceptions import FhirError
from cds.fhir.dates import fhir_instant
from cds.fhir.indexing import search_entries
from cds.fhir.models import SearchIndexEntry, StoredResource
from cds.fhir.selectors import resource_search_queryset


def fhir_resource_store(
    *, resource_type: str, content: dict[str, Any], source: str, organization_id: int, logical_id: str | None = None
) -> StoredResource:
    """Store version 1 of a new resource of ``organization_id`` with a server-assigned id; index it for search.

    The caller's dict is not modified; the stored copy gets ``id`` and ``meta``.
    """
    now = timezone.now()
    stored_content = copy.copy(content)  # shallow: only top-level id/meta change
    # A Bundle assigns ids up front (to resolve urn:uuid references); a plain create has none.
    stored_content["id"] = logical_id or content.get("id") or uuid.uuid4().hex
    meta = dict(stored_content.get("meta") or {})
    meta.update({"versionId": "1", "lastUpdated": fhir_instant(now)})
    stored_content["meta"] = meta
    resource = StoredResource.objects.create(
        resource_type=resource_type,
        logical_id=stored_content["id"],
        version_id=1,
        last_updated=now,
        content=stored_content,
        source=source,
        organization_id=organization_id,
    )
    SearchIndexEntry.objects.bulk_create(
        SearchIndexEntry(resource=resource, resource_type=resource_type, **entry)
        for entry in search_entries(resource_type, stored_content)
    )
    return resource


@transaction.atomic
def fhir_resource_update(
    *,
    resource_type: str,
    logical_id: str,
    content: dict[str, Any],
    source: str,
    expected_version: int | None = None,
    organization_id: int | None = None,
) -> StoredResource:
    """Store a new version of an existing resource; the old version stays readable (vread).

    Raises FhirError 404 when the resource does not exist and 412 when ``expected_version`` (an
    ``If-Match`` version) is not the current one. With ``organization_id`` (a client's update),
    another organisation's resource is not found, like on read.
    """
    # Lock the current row so two concurrent updates cannot both become version N+1.
    current_versions = StoredResource.objects.select_for_update().filter(
        resource_type=resource_type, logical_id=logical_id, is_current=True
    )
    if organization_id is not None:
        current_versions = current_versions.filter(organization_id=organization_id)
    current = current_versions.first()
    if current is None:
        raise FhirError.single(404, "not-found", f"{resource_type}/{logical_id} is not known")
    if expected_version is not None and expected_version != current.version_id:
        raise FhirError.single(
            412, "conflict", f"{resource_type}/{logical_id} is at version {current.version_id}, not {expected_version}"
        )
    now = timezone.now()
    version = current.version_id + 1
    stored_content = {**content, "id": logical_id}
    meta = dict(stored_content.get("meta") or {})
    meta.update({"versionId": str(version), "lastUpdated": fhir_instant(now)})
    stored_content["meta"] = meta
    StoredResource.objects.filter(pk=current.pk).update(is_current=False)
    current.search_entries.all().delete()  # the index describes current versions only
    resource = StoredResource.objects.create(
        resource_type=resource_type,
        logical_id=logical_id,
        version_id=version,
        last_updated=now,
        content=stored_content,
        source=source,
        organization_id=current.organization_id,  # a resource never changes organisation
    )
    SearchIndexEntry.objects.bulk_create(
        SearchIndexEntry(resource=resource, resource_type=resource_type, **entry)
        for entry in search_entries(resource_type, stored_content)
    )
    return resource


def _lock_conditional_key(organization_id: int, resource_type: str, query: str) -> None:
    """Serialize conditional creates on one key so two identical requests cannot both create.

    A transaction-scoped advisory lock (Postgres) is released at commit; SQLite (demo only) already
    serializes writers with its IMMEDIATE transactions.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"{organization_id}:{resource_type}?{query}"])


def conditional_match(
    *, resource_type: str, query: str, expression: str, organization_id: int
) -> StoredResource | None:
    """Return the one resource of ``organization_id`` matching an ``If-None-Exist`` query; None if none, 412 if several.

    Another organisation's resources never match: their existence must not leak, and a client must
    not be handed (or attach data to) another tenant's resource.
    """
    params = parse_qsl(query.lstrip("?"), keep_blank_values=True)
    if not params:
        raise FhirError.single(400, "invalid", f"conditional create query {query!r} is empty", expression)
    _lock_conditional_key(organization_id, resource_type, query)
    queryset = resource_search_queryset(resource_type=resource_type, params=params, organization_id=organization_id)
    matches = list(queryset[:2])
    if len(matches) > 1:
        raise FhirError.single(
            412, "duplicate", f"conditional create {query!r} matches more than one {resource_type}", expression
        )
    return matches[0] if matches else None
