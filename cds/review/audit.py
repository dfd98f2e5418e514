"""The audit trail (django-auditlog's LogEntry) as FHIR R4 ``AuditEvent`` resources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from auditlog.models import LogEntry
from django.db.models import QuerySet

from cds.fhir.dates import fhir_instant

DCM = "http://dicom.nema.org/resources/ontology/DCM"
# auditlog action -> (AuditEvent.action, DICOM subtype)
_ACTIONS = {
    LogEntry.Action.CREATE: ("C", "110100"),
    LogEntry.Action.UPDATE: ("U", "110100"),
    LogEntry.Action.DELETE: ("D", "110100"),
    LogEntry.Action.ACCESS: ("R", "110110"),
}


def audit_entries(*, since: datetime | None = None) -> QuerySet[LogEntry]:
    """Return log entries (oldest first) with their actor and model joined."""
    entries = LogEntry.objects.select_related("actor", "content_type").order_by("timestamp", "pk")
    return entries.filter(timestamp__gte=since) if since else entries


def audit_event(entry: LogEntry) -> dict[str, Any]:
    """Return one LogEntry as an AuditEvent (R4)."""
    action, _ = _ACTIONS.get(entry.action, ("E", "110100"))
    who = entry.actor.get_username() if entry.actor else "system"
    agent: dict[str, Any] = {
        "who": {"identifier": {"system": "urn:ecg-cds:user", "value": who}, "display": who},
        "requestor": entry.actor is not None,
    }
    if entry.remote_addr:
        agent["network"] = {"address": entry.remote_addr, "type": "2"}
    model = f"{entry.content_type.app_label}.{entry.content_type.model}"
    entity: dict[str, Any] = {
        "what": {
            "identifier": {"system": f"urn:ecg-cds:{model}", "value": str(entry.object_pk)},
            "display": entry.object_repr[:200],
        },
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
            "code": "2",
            "display": "System Object",
        },
    }
    if entry.changes:
        entity["detail"] = [{"type": "changes", "valueString": json.dumps(entry.changes, default=str)[:4000]}]
    return {
        "resourceType": "AuditEvent",
        "id": f"auditlog-{entry.pk}",
        "type": {
            "system": DCM,
            "code": "110110" if action == "R" else "110100",
            "display": "Patient Record" if action == "R" else "Application Activity",
        },  # fmt: skip
        "action": action,
        "recorded": fhir_instant(entry.timestamp),
        "outcome": "0",
        "agent": [agent],
        "source": {"observer": {"display": "ecg-cds admin"}},
        "entity": [entity],
    }


def audit_bundle(entries: QuerySet[LogEntry]) -> Iterator[dict[str, Any]]:
    """Yield AuditEvents for ``entries`` (streamed: the trail can be long)."""
    for entry in entries.iterator(chunk_size=500):
        yield audit_event(entry)
