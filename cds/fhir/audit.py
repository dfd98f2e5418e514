"""Audit events for machine access to patient data (FHIR reads and searches, CDS Hooks calls).

Admin users' views and changes are recorded by django-auditlog (``cds.review`` registers the
models); API clients are no Django users, so their access is written here as an auditlog
``LogEntry`` of action ``access`` with the client in ``additional_data``. ``cds.review.audit``
exports both as FHIR AuditEvents in the style of IHE Basic Audit Log Patterns (BALP).
"""

from __future__ import annotations

from typing import Any

from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType

from cds.fhir.models import StoredResource


def audit_api_access(
    *, client_id: str, interaction: str, what: str, resource_pks: list[int], query: str = ""
) -> LogEntry:
    """Record that API client ``client_id`` read (``read``/``vread``), searched or called a hook for ``what``.

    ``resource_pks`` are the stored resources returned (ids only: the audit trail must not copy
    the patient data it guards). One entry per request, however many resources it returned.
    """
    return LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(StoredResource),
        object_pk=str(resource_pks[0]) if len(resource_pks) == 1 else "",
        object_repr=what[:200],
        action=LogEntry.Action.ACCESS,
        additional_data={
            "api_client": client_id,
            "interaction": interaction,
            "query": query[:2000],
            "resources": resource_pks[:500],
        },
    )


def audit_details(entry: LogEntry) -> dict[str, Any]:
    """Return an API-access entry's details (empty for admin entries)."""
    data = entry.additional_data if isinstance(entry.additional_data, dict) else {}
    return data if "api_client" in data else {}
