"""The audit trail (django-auditlog's LogEntry) as FHIR R4 ``AuditEvent`` resources."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db.models import QuerySet

from cds.analysis.models import Prediction
from cds.fhir.audit import audit_details
from cds.fhir.dates import fhir_instant
from cds.fhir.models import StoredResource

DCM = "http://dicom.nema.org/resources/ontology/DCM"
# auditlog action -> (AuditEvent.action, DICOM subtype)
_ACTIONS = {
    LogEntry.Action.CREATE: ("C", "110100"),
    LogEntry.Action.UPDATE: ("U", "110100"),
    LogEntry.Action.DELETE: ("D", "110100"),
    LogEntry.Action.ACCESS: ("R", "110110"),
}


# BALP: the RESTful interaction of a query or read (http://hl7.org/fhir/restful-interaction).
_INTERACTIONS = "http://hl7.org/fhir/restful-interaction"


def audit_csv_export(*, user: Any, name: str, query: str) -> LogEntry:
    """Record a CSV export (a bulk read of patient data) by ``user``, with the filters it used."""
    return LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(Prediction),
        object_pk="",
        object_repr=f"{name} export",
        action=LogEntry.Action.ACCESS,
        actor=user if getattr(user, "is_authenticated", False) else None,
        additional_data={"export": name, "query": query[:2000]},
    )


def _api_access_event(entry: LogEntry, details: dict[str, Any]) -> dict[str, Any]:
    """Return an API client's FHIR read/search or CDS Hooks call as a BALP-style AuditEvent."""
    interaction = str(details.get("interaction", ""))
    search = interaction.startswith("search")
    references = [
        f"{resource_type}/{logical_id}"
        for resource_type, logical_id in StoredResource.objects.filter(
            pk__in=details.get("resources") or []
        ).values_list("resource_type", "logical_id")
    ]
    entities: list[dict[str, Any]] = [
        {
            "what": {"reference": f"{settings.PUBLIC_BASE_URL}/fhir/{reference}"},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {
                "system": "http://terminology.hl7.org/CodeSystem/object-role",
                "code": "4",
                "display": "Domain Resource",
            },
        }
        for reference in references
    ]
    if search or details.get("query"):
        entities.append(
            {
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": base64.b64encode(str(details.get("query", "")).encode()).decode(),
                "description": entry.object_repr,
            }
        )
    return {
        "resourceType": "AuditEvent",
        "id": f"auditlog-{entry.pk}",
        "type": {
            "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
            "code": "rest",
            "display": "RESTful Operation",
        },
        "subtype": [
            {
                "system": _INTERACTIONS,
                "code": interaction.split(" ")[0] if not interaction.startswith("cds") else "operation",
                "display": interaction,
            }
        ],
        "action": "E" if search else "R",
        "recorded": fhir_instant(entry.timestamp),
        "outcome": "0",
        "agent": [
            {
                "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
                "who": {
                    "identifier": {"system": "urn:ecg-cds:api-client", "value": str(details.get("api_client", ""))}
                },
                "requestor": True,
            }
        ],
        "source": {"observer": {"display": "ecg-cds FHIR API"}},
        "entity": entities,
    }


def audit_entries(*, since: datetime | None = None) -> QuerySet[LogEntry]:
    """Return log entries (oldest first) with their actor and model joined."""
    entries = LogEntry.objects.select_related("actor", "content_type").order_by("timestamp", "pk")
    return entries.filter(timestamp__gte=since) if since else entries


def audit_event(entry: LogEntry) -> dict[str, Any]:
    """Return one LogEntry as an AuditEvent (R4)."""
    details = audit_details(entry)
    if details:
        return _api_access_event(entry, details)
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
