"""System-level Bulk Data export (``$export``, FHIR Bulk Data Access IG v2): parameters, jobs, files.

The kick-off records a ``BulkExport`` and enqueues ``fhir.bulk_export_run`` on the maintenance
queue; the task writes one NDJSON file per type (split every ``BULK_EXPORT_FILE_MAX_RESOURCES``)
under ``BULK_EXPORT_DIR/<id>/``. Each resource is written as it stood at ``transaction_time`` (the
version current then), so what arrives or changes during the export is not in it. Scope checks
are the interface's (``cds.fhirapi.exports``): this module never widens what a caller may read.
"""

from __future__ import annotations

import logging
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet, TextField
from django.db.models.functions import Cast
from django.utils import timezone

from cds.core.dispatch import enqueue
from cds.core.exceptions import FhirError, FhirIssue
from cds.fhir.audit import audit_api_access
from cds.fhir.models import BulkExport, StoredResource
from cds.fhir.validation import READABLE_TYPES

logger = logging.getLogger(__name__)

BULK_EXPORT_RUN_TASK = "fhir.bulk_export_run"
# The IG: servers SHALL accept the full type and its two abbreviations.
OUTPUT_FORMATS = frozenset({"application/fhir+ndjson", "application/ndjson", "ndjson"})
# _format is the FHIR response-format parameter, checked for every FHIR view (cds.fhir.http).
_KNOWN_PARAMS = frozenset({"_type", "_since", "_outputFormat", "_format"})
_INSTANT = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
_RUNNING = (BulkExport.Status.ACCEPTED, BulkExport.Status.IN_PROGRESS)


@dataclass
class ExportParams:
    """A parsed kick-off: the types asked for (None: every type the client may read) and ``_since``."""

    types: list[str] | None
    since: datetime | None
    ignored: list[FhirIssue] = field(default_factory=list)  # lenient handling: what was skipped


def _since_parse(raw: str) -> datetime:
    if not _INSTANT.match(raw):
        raise FhirError.single(
            400, "value", f"_since={raw[:40]!r} is not a FHIR instant (e.g. 2026-01-01T00:00:00Z)", "_since"
        )
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise FhirError.single(400, "value", f"_since={raw[:40]!r} is not a valid instant", "_since") from None


def export_params_parse(params: list[tuple[str, str]], *, lenient: bool = False) -> ExportParams:
    """Return the kick-off parameters; FhirError 400 naming each one we cannot honour.

    Unsupported parameters (``_typeFilter``, ``patient``, ``_elements``...) and unknown types are
    refused unless ``lenient`` (``Prefer: handling=lenient``, as the IG allows), then skipped and
    listed in ``ignored``. A malformed ``_since`` or an unsupported ``_outputFormat`` is always an
    error: ignoring them would export something else than asked.
    """
    unsupported: list[FhirIssue] = []
    for name, _ in params:
        if name not in _KNOWN_PARAMS:
            unsupported.append(
                FhirIssue(code="not-supported", diagnostics=f"$export does not support {name!r}", expression=(name,))
            )
    types: list[str] | None = None
    raw_types = [t.strip() for name, value in params if name == "_type" for t in value.split(",")]
    if raw_types:
        types = []
        for resource_type in raw_types:
            if resource_type in READABLE_TYPES:
                if resource_type not in types:
                    types.append(resource_type)
            else:
                unsupported.append(
                    FhirIssue(
                        code="not-supported",
                        diagnostics=f"_type {resource_type[:64]!r} is not a type this server exports",
                        expression=("_type",),
                    )
                )
    if unsupported and not lenient:
        raise FhirError(400, unsupported)
    if types is not None and not types:
        raise FhirError.single(400, "value", "_type names no type this server exports", "_type")
    # An unencoded "+" in a query string arrives as a space (application/fhir ndjson).
    formats = [value.replace(" ", "+") for name, value in params if name == "_outputFormat"]
    for output_format in formats:
        if output_format not in OUTPUT_FORMATS:
            raise FhirError.single(
                400,
                "not-supported",
                f"_outputFormat {output_format[:60]!r} is not supported; use application/fhir+ndjson",
                "_outputFormat",
            )
    sinces = [value for name, value in params if name == "_since"]
    if len(sinces) > 1:
        raise FhirError.single(400, "value", "_since may be given once", "_since")
    since = _since_parse(sinces[0]) if sinces else None
    ignored = [
        FhirIssue(code=i.code, diagnostics=f"ignored: {i.diagnostics}", expression=i.expression, severity="warning")
        for i in unsupported
    ]
    return ExportParams(types=types, since=since, ignored=ignored)


def export_directory(export_id: uuid.UUID | str) -> Path:
    """Return the directory of an export's files."""
    return Path(settings.BULK_EXPORT_DIR) / str(export_id)


def bulk_export_start(
    *, organization_id: int, client_id: str, request_url: str, types: list[str], since: datetime | None
) -> BulkExport:
    """Record an export and enqueue its task once the record is committed."""
    export = BulkExport.objects.create(
        id=uuid.uuid4(),
        organization_id=organization_id,
        client_id=client_id,
        request_url=request_url,
        types=types,
        since=since,
        transaction_time=timezone.now(),
    )
    transaction.on_commit(lambda: enqueue(BULK_EXPORT_RUN_TASK, str(export.pk)), robust=True)
    return export


def bulk_export_get(*, export_id: uuid.UUID, client_id: str, organization_id: int) -> BulkExport:
    """Return the caller's own export; 404 for another client's, a cancelled or an expired one.

    Another client's export answers as an unknown one, so export ids do not leak.
    """
    export = (
        BulkExport.objects.filter(pk=export_id, client_id=client_id, organization_id=organization_id)
        .exclude(status=BulkExport.Status.CANCELLED)
        .first()
    )
    if export is None:
        raise FhirError.single(404, "not-found", f"export {export_id} is not known (cancelled, expired or not yours)")
    return export


def bulk_export_cancel(*, export_id: uuid.UUID, client_id: str, organization_id: int) -> None:
    """Cancel an export (running or finished) and delete its files; a running task stops at its next part."""
    export = bulk_export_get(export_id=export_id, client_id=client_id, organization_id=organization_id)
    BulkExport.objects.filter(pk=export.pk).update(
        status=BulkExport.Status.CANCELLED, expires_at=timezone.now(), updated_at=timezone.now()
    )
    shutil.rmtree(export_directory(export.pk), ignore_errors=True)


def resources_as_of(
    *, resource_type: str, organization_id: int, at: datetime, since: datetime | None = None
) -> QuerySet[StoredResource]:
    """Return each resource of the organisation in the version current at ``at`` (a snapshot read).

    A version counts when it was written at or before ``at`` and no later version was; versions
    written after ``at`` are invisible, so an export does not mix states. ``since`` keeps only
    versions written after it (the IG's ``_since``: changed since then).
    """
    later = StoredResource.objects.filter(
        resource_type=resource_type,
        logical_id=OuterRef("logical_id"),
        version_id__gt=OuterRef("version_id"),
        last_updated__lte=at,
    )
    queryset = StoredResource.objects.filter(
        resource_type=resource_type, organization_id=organization_id, last_updated__lte=at
    ).filter(~Exists(later))
    if since is not None:
        queryset = queryset.filter(last_updated__gt=since)
    return queryset


class _Cancelled(Exception):
    pass


def _save(export_id: uuid.UUID, **fields: Any) -> None:
    """Update a running export, never overwriting a cancellation made meanwhile; raise if cancelled."""
    updated = (
        BulkExport.objects.filter(pk=export_id)
        .exclude(status=BulkExport.Status.CANCELLED)
        .update(updated_at=timezone.now(), **fields)
    )
    if not updated:
        raise _Cancelled


def _write_type(export: BulkExport, resource_type: str, directory: Path, pks: list[int]) -> list[dict[str, Any]]:
    """Write one type's resources as NDJSON parts; return the manifest entries (none when empty)."""
    rows = (
        resources_as_of(
            resource_type=resource_type,
            organization_id=export.organization_id,
            at=export.transaction_time,
            since=export.since,
        )
        .order_by("pk")
        # The stored JSON as text: no decode and re-encode of ~230 kB waveforms in Python.
        .annotate(text=Cast("content", TextField()))
        .values_list("pk", "text")
    )
    entries: list[dict[str, Any]] = []
    handle = None
    count = 0
    per_file = settings.BULK_EXPORT_FILE_MAX_RESOURCES
    try:
        for pk, text in rows.iterator(chunk_size=200):
            if handle is None or count == per_file:
                if handle is not None:
                    handle.close()
                    _save(export.pk, progress=f"{resource_type}: {sum(e['count'] for e in entries)} written")
                name = f"{resource_type}-{len(entries) + 1}.ndjson"
                handle = (directory / name).open("w", encoding="utf-8")
                entries.append({"type": resource_type, "file": name, "count": 0})
                count = 0
            handle.write(text.replace("\n", " "))  # jsonb text has no raw newline; belt and braces
            handle.write("\n")
            count += 1
            entries[-1]["count"] = count
            if len(pks) < 500:
                pks.append(pk)
    finally:
        if handle is not None:
            handle.close()
    return entries


def bulk_export_run(export_id: str) -> str:
    """Run an export (the Celery task's body); return its final status.

    A redelivered task (its worker died) starts over. Any failure marks the export failed with the
    reason, which the status URL then answers (500 OperationOutcome): a client never polls forever.
    """
    export = BulkExport.objects.filter(pk=export_id).first()
    if export is None or export.status not in _RUNNING:
        return "skipped"
    directory = export_directory(export.pk)
    shutil.rmtree(directory, ignore_errors=True)
    pks: list[int] = []
    try:
        directory.mkdir(parents=True)
        _save(export.pk, status=BulkExport.Status.IN_PROGRESS, progress="starting", output=[])
        output: list[dict[str, Any]] = []
        for index, resource_type in enumerate(export.types, start=1):
            output += _write_type(export, resource_type, directory, pks)
            _save(export.pk, progress=f"{index} of {len(export.types)} types written", output=output)
        _save(
            export.pk,
            status=BulkExport.Status.COMPLETED,
            progress="completed",
            expires_at=timezone.now() + timedelta(seconds=settings.BULK_EXPORT_EXPIRES_AFTER_S),
        )
    except _Cancelled:
        shutil.rmtree(directory, ignore_errors=True)
        return BulkExport.Status.CANCELLED
    except SoftTimeLimitExceeded:
        _fail(export, f"the export took longer than {settings.BULK_EXPORT_SOFT_TIME_LIMIT_S} s and was stopped")
        return BulkExport.Status.FAILED
    except Exception as exc:
        logger.exception("bulk export %s failed", export.pk)
        _fail(export, f"the export failed: {type(exc).__name__}")
        return BulkExport.Status.FAILED
    audit_api_access(
        client_id=export.client_id,
        interaction="export",
        what=f"$export {export.pk}",
        query=f"_type={','.join(export.types)}" + (f"&_since={export.since.isoformat()}" if export.since else ""),
        resource_pks=pks,
    )
    return BulkExport.Status.COMPLETED


def _fail(export: BulkExport, reason: str) -> None:
    shutil.rmtree(export_directory(export.pk), ignore_errors=True)
    BulkExport.objects.filter(pk=export.pk, status__in=_RUNNING).update(
        status=BulkExport.Status.FAILED,
        error=reason,
        output=[],
        updated_at=timezone.now(),
        expires_at=timezone.now() + timedelta(seconds=settings.BULK_EXPORT_EXPIRES_AFTER_S),
    )


def bulk_export_sweep(now: datetime | None = None) -> dict[str, int]:
    """Delete expired exports with their files; fail exports whose task went silent (lost worker)."""
    now = now or timezone.now()
    stale = BulkExport.objects.filter(
        status__in=_RUNNING, updated_at__lt=now - timedelta(seconds=settings.BULK_EXPORT_STALE_AFTER_S)
    )
    failed = 0
    for export in stale:
        _fail(export, "the export stopped making progress (its worker was lost); start a new one")
        failed += 1
    expired = list(BulkExport.objects.filter(expires_at__lte=now).values_list("pk", flat=True))
    for export_id in expired:
        shutil.rmtree(export_directory(export_id), ignore_errors=True)
    BulkExport.objects.filter(pk__in=expired).delete()
    return {"expired": len(expired), "failed": failed}
