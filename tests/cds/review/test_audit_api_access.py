"""Audit (issue 13): API clients' reads, searches and hook calls, CSV exports, and changes to clients, users and groups."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from fhir.resources.R4B.bundle import Bundle

from cds.oauth.models import ApiClient

pytestmark = pytest.mark.django_db


def _events(tmp_path: Path) -> list[dict[str, Any]]:
    out = tmp_path / "audit.json"
    call_command("export_audit_events", out=str(out))
    bundle = json.loads(out.read_text())
    Bundle.model_validate(bundle)  # every AuditEvent validates as R4
    return [entry["resource"] for entry in bundle.get("entry", [])]


def test_it_audits_an_api_clients_reads_searches_and_hook_calls(
    service_account: Any, patient_resource: dict[str, Any], tmp_path: Path
) -> None:
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    client_id = ApiClient.objects.get().client_id
    service_account.get(f"/fhir/Patient/{patient_id}")
    service_account.get("/fhir/Patient?identifier=urn:oid:1.2.3.4.mrn|MRN-0001")
    hook = {"hook": "patient-view", "hookInstance": "h-1", "context": {"patientId": patient_id}}
    service_account.post("/cds-services/ecg-ai-findings", hook, content_type="application/json")

    api_events = [e for e in _events(tmp_path) if e["type"]["code"] == "rest"]
    assert [e["subtype"][0]["display"] for e in api_events] == ["read", "search-type", "cds-hooks patient-view"]
    patient_url = f"http://testserver/fhir/Patient/{patient_id}"
    for event in api_events:
        assert event["agent"][0]["who"]["identifier"] == {"system": "urn:ecg-cds:api-client", "value": client_id}
        assert patient_url in [entity.get("what", {}).get("reference") for entity in event["entity"]]
    read, search, _ = api_events
    assert read["action"] == "R" and search["action"] == "E"
    query = next(entity["query"] for entity in search["entity"] if "query" in entity)
    assert "MRN-0001" in base64.b64decode(query).decode()


def test_it_audits_changes_to_api_clients_users_and_groups_without_their_secrets(service_account: Any) -> None:
    client = ApiClient.objects.get()
    client.scopes = "system/*.rs"
    client.save()
    change = LogEntry.objects.get_for_object(client).filter(action=LogEntry.Action.UPDATE).get()
    assert "scopes" in change.changes_dict and "secret_hash" not in json.dumps(change.changes_dict)

    group = Group.objects.create(name="night shift")
    user = get_user_model().objects.create_user("locum", password="a-long-password-1")
    user.groups.add(group)
    user.set_password("another-long-password-2")
    user.save()
    assert LogEntry.objects.get_for_object(group).filter(action=LogEntry.Action.CREATE).exists()
    user_entries = LogEntry.objects.get_for_object(user)
    assert user_entries.filter(action=LogEntry.Action.CREATE).exists()
    assert "night shift" in json.dumps([e.changes_dict for e in user_entries])  # group membership
    assert "pbkdf2" not in json.dumps([e.changes_dict for e in user_entries])  # never the password hash


def test_it_audits_a_csv_export(auditor: Any) -> None:
    response = auditor.client.get("/admin/review/qualityprediction/export.csv")
    assert response.status_code == 200
    b"".join(response.streaming_content)
    entry = LogEntry.objects.get(object_repr="prediction-audit.csv export")
    assert entry.action == LogEntry.Action.ACCESS and entry.actor == auditor.user
