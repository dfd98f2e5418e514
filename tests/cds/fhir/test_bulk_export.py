"""Bulk Data export (issue 15 item 8): ``GET /fhir/$export`` per the Bulk Data Access IG v2.

Real PostgreSQL; the export task runs eagerly (``.apply``) as the analysis job tests run theirs,
and once through a live web process and a real Celery worker on RabbitMQ (``live`` marker).
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from auditlog.models import LogEntry
from django.test import Client

from cds.fhir import bulk
from cds.fhir.bulk import export_directory
from cds.fhir.models import BulkExport, StoredResource
from cds.fhir.services import fhir_resource_update
from cds.fhir.tasks import fhir_bulk_export_run, fhir_bulk_export_sweep
from tests.conftest import OTHER_ORGANIZATION, FhirTestClient, api_client_token

pytestmark = pytest.mark.django_db
KICKOFF_HEADERS = {"HTTP_ACCEPT": "application/fhir+json", "HTTP_PREFER": "respond-async"}


@pytest.fixture(autouse=True)
def export_dir(settings: Any, tmp_path: Path) -> Path:
    settings.BULK_EXPORT_DIR = tmp_path / "bulk"
    return Path(settings.BULK_EXPORT_DIR)


def kick_off(fhir: FhirTestClient, query: str = "", **headers: str) -> str:
    """Start an export; return its status URL's path."""
    response = fhir.get(f"/fhir/$export{'?' + query if query else ''}", **{**KICKOFF_HEADERS, **headers})
    assert response.status_code == 202, response.content
    location = response["Content-Location"]
    assert location.startswith("http://testserver/fhir/$export-status/")
    return str(location.removeprefix("http://testserver"))


def export_id(status_path: str) -> str:
    return status_path.rsplit("/", 1)[1]


def run(status_path: str) -> str:
    return str(fhir_bulk_export_run.apply(args=[export_id(status_path)]).get())


def manifest(fhir: FhirTestClient, status_path: str) -> dict[str, Any]:
    response = fhir.get(status_path, HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    return dict(response.json())


def download(fhir: FhirTestClient, url: str) -> list[dict[str, Any]]:
    response = fhir.get(url.removeprefix("http://testserver"), HTTP_ACCEPT="application/fhir+ndjson")
    assert response.status_code == 200, getattr(response, "content", b"")
    assert response["Content-Type"] == "application/fhir+ndjson"
    text = b"".join(response.streaming_content).decode()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def exported(fhir: FhirTestClient, status_path: str) -> dict[str, list[dict[str, Any]]]:
    """Return the resources of a completed export by type."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in manifest(fhir, status_path)["output"]:
        lines = download(fhir, entry["url"])
        assert len(lines) == entry["count"]
        by_type.setdefault(entry["type"], []).extend(lines)
    return by_type


def create_patient(fhir: FhirTestClient, **fields: Any) -> str:
    response = fhir.post("/fhir/Patient", {"resourceType": "Patient", **fields})
    assert response.status_code == 201, response.content
    return str(response.json()["id"])


def test_full_flow_kickoff_poll_manifest_download(service_account: FhirTestClient, ecg_factory: Any) -> None:
    patient = create_patient(service_account, gender="female")
    ecg = service_account.post("/fhir/Observation", ecg_factory(9, patient_reference=f"Patient/{patient}"))
    assert ecg.status_code == 201

    status_path = kick_off(service_account, "_type=Patient,Observation")
    polled = service_account.get(status_path)
    assert polled.status_code == 202
    assert polled["X-Progress"] == "accepted"
    assert int(polled["Retry-After"]) > 0

    assert run(status_path) == "completed"
    body = manifest(service_account, status_path)
    export = BulkExport.objects.get()
    assert body["transactionTime"] == export.transaction_time.isoformat().replace("+00:00", "Z")
    assert body["request"] == "http://testserver/fhir/$export?_type=Patient%2CObservation"
    assert body["requiresAccessToken"] is True
    assert body["error"] == []
    assert [(o["type"], o["count"]) for o in body["output"]] == [("Patient", 1), ("Observation", 1)]

    resources = exported(service_account, status_path)
    stored = {r.reference: r.content for r in StoredResource.objects.filter(is_current=True)}
    for resource in resources["Patient"] + resources["Observation"]:
        assert resource == stored[f"{resource['resourceType']}/{resource['id']}"]
    # The ECG whole, waveform included (quality teams want it).
    assert resources["Observation"][0]["component"][0]["valueSampledData"]["data"]

    audited = LogEntry.objects.filter(action=LogEntry.Action.ACCESS).values_list("additional_data", flat=True)
    interactions = {d["interaction"] for d in audited}
    assert {"export-kickoff", "export", "export-download"} <= interactions
    completed = next(d for d in audited if d["interaction"] == "export")
    assert sorted(completed["resources"]) == sorted(
        StoredResource.objects.filter(is_current=True, resource_type__in=["Patient", "Observation"]).values_list(
            "pk", flat=True
        )
    )


def test_no_type_exports_every_readable_type_and_the_capability_statement_says_so(
    service_account: FhirTestClient, client: Client
) -> None:
    create_patient(service_account)
    status_path = kick_off(service_account)
    assert run(status_path) == "completed"
    assert BulkExport.objects.get().types == [
        "Patient",
        "Observation",
        "DocumentReference",
        "DiagnosticReport",
        "Task",
        "Device",
        "Provenance",
    ]
    # Types without resources get no file (the IG: no empty files).
    assert [o["type"] for o in manifest(service_account, status_path)["output"]] == ["Patient"]

    capability = client.get("/fhir/metadata").json()
    assert capability["rest"][0]["operation"][0]["name"] == "export"
    assert capability["rest"][0]["operation"][0]["definition"] == (
        "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/export"
    )


def test_since_filters_on_last_updated(service_account: FhirTestClient) -> None:
    old = create_patient(service_account, gender="male")
    new = create_patient(service_account, gender="female")
    StoredResource.objects.filter(logical_id=old).update(last_updated=datetime(2020, 1, 1, tzinfo=UTC))

    # The "+" unencoded, as many clients send it (it arrives as a space).
    status_path = kick_off(
        service_account, "_type=Patient&_since=2021-01-01T00:00:00Z&_outputFormat=application/fhir+ndjson"
    )
    run(status_path)
    assert [p["id"] for p in exported(service_account, status_path)["Patient"]] == [new]
    assert BulkExport.objects.get().since == datetime(2021, 1, 1, tzinfo=UTC)


def test_resources_changed_after_transaction_time_are_not_in_it(service_account: FhirTestClient) -> None:
    patient = create_patient(service_account, gender="male")

    def update(gender: str) -> None:
        current = StoredResource.objects.get(logical_id=patient, is_current=True)
        fhir_resource_update(
            resource_type="Patient", logical_id=patient, content={**current.content, "gender": gender}, source="t"
        )

    update("unknown")  # version 2, before the snapshot: the one exported (version 1 is not, either)
    status_path = kick_off(service_account, "_type=Patient")
    # After the kick-off (the snapshot instant): an update and a new resource.
    update("female")
    create_patient(service_account, gender="other")

    run(status_path)
    patients = exported(service_account, status_path)["Patient"]
    assert [(p["id"], p["meta"]["versionId"], p["gender"]) for p in patients] == [(patient, "2", "unknown")]


def test_large_types_are_split_into_parts(service_account: FhirTestClient, settings: Any) -> None:
    settings.BULK_EXPORT_FILE_MAX_RESOURCES = 2
    created = {create_patient(service_account) for _ in range(3)}
    status_path = kick_off(service_account, "_type=Patient")
    run(status_path)
    output = manifest(service_account, status_path)["output"]
    assert [(o["type"], o["count"], o["url"].rsplit("/", 1)[1]) for o in output] == [
        ("Patient", 2, "Patient-1.ndjson"),
        ("Patient", 1, "Patient-2.ndjson"),
    ]
    assert {p["id"] for p in exported(service_account, status_path)["Patient"]} == created


def test_another_organisations_resources_never_appear(service_account: FhirTestClient, client: Client) -> None:
    ours = create_patient(service_account)
    other = FhirTestClient(Client(), api_client_token(client, "system/*.cruds", OTHER_ORGANIZATION))
    create_patient(other)
    status_path = kick_off(service_account)
    run(status_path)
    assert [p["id"] for p in exported(service_account, status_path)["Patient"]] == [ours]


def test_another_client_cannot_poll_download_or_cancel(service_account: FhirTestClient, client: Client) -> None:
    create_patient(service_account)
    status_path = kick_off(service_account, "_type=Patient")
    run(status_path)
    file_url = manifest(service_account, status_path)["output"][0]["url"].removeprefix("http://testserver")

    same_org = FhirTestClient(Client(), api_client_token(client, "system/*.rs"))
    other_org = FhirTestClient(Client(), api_client_token(client, "system/*.rs", OTHER_ORGANIZATION))
    for intruder in (same_org, other_org):
        assert intruder.get(status_path).status_code == 404
        assert intruder.get(file_url).status_code == 404
        assert intruder.client.delete(status_path, **intruder.headers).status_code == 404
    anonymous = Client()
    assert anonymous.get(status_path).status_code == 401
    assert anonymous.get(file_url).status_code == 401
    assert len(download(service_account, f"http://testserver{file_url}")) == 1


def test_scopes_withdrawn_after_the_kickoff_stop_the_download(service_account: FhirTestClient) -> None:
    from cds.oauth.models import ApiClient

    create_patient(service_account)
    status_path = kick_off(service_account, "_type=Patient")
    run(status_path)
    file_url = manifest(service_account, status_path)["output"][0]["url"].removeprefix("http://testserver")
    ApiClient.objects.filter(client_id=BulkExport.objects.get().client_id).update(scopes="system/Observation.rs")
    assert service_account.get(file_url).status_code == 403


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("_typeFilter=Patient%3Fgender%3Dmale", "_typeFilter"),
        ("patient=Patient/1", "patient"),
        ("_elements=id", "_elements"),
        ("_type=Foo", "_type"),
        ("_since=yesterday", "_since"),
        ("_since=2024-01-01", "_since"),
        ("_outputFormat=text/csv", "_outputFormat"),
    ],
)
def test_bad_parameters_are_refused_naming_them(service_account: FhirTestClient, query: str, named: str) -> None:
    response = service_account.get(f"/fhir/$export?{query}", **KICKOFF_HEADERS)
    assert response.status_code == 400, response.content
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["expression"] == [named]
    assert not BulkExport.objects.exists()


def test_kickoff_needs_prefer_respond_async(service_account: FhirTestClient) -> None:
    response = service_account.get("/fhir/$export", HTTP_ACCEPT="application/fhir+json")
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"] == ["Prefer"]


def test_lenient_handling_ignores_unsupported_parameters_with_a_warning(service_account: FhirTestClient) -> None:
    response = service_account.get(
        "/fhir/$export?_type=Patient,Foo&_typeFilter=x",
        HTTP_ACCEPT="application/fhir+json",
        HTTP_PREFER="respond-async, handling=lenient",
    )
    assert response.status_code == 202
    warnings = response.json()["issue"]
    assert {tuple(w["expression"]) for w in warnings} == {("_type",), ("_typeFilter",)}
    assert {w["severity"] for w in warnings} == {"warning"}
    assert BulkExport.objects.get().types == ["Patient"]


def test_scopes_limit_the_types(client: Client) -> None:
    patients_only = FhirTestClient(Client(), api_client_token(client, "system/Patient.rs"))
    refused = patients_only.get("/fhir/$export?_type=Patient,Observation", **KICKOFF_HEADERS)
    assert refused.status_code == 403
    assert "Observation" in refused.json()["issue"][0]["diagnostics"]
    kick_off(patients_only)
    assert BulkExport.objects.get().types == ["Patient"]
    create_only = FhirTestClient(Client(), api_client_token(client, "system/*.c"))
    assert create_only.get("/fhir/$export", **KICKOFF_HEADERS).status_code == 403


def test_delete_cancels_and_removes_the_files(service_account: FhirTestClient) -> None:
    create_patient(service_account)
    pending = kick_off(service_account, "_type=Patient")
    cancelled = service_account.client.delete(pending, **service_account.headers)
    assert cancelled.status_code == 202
    assert service_account.get(pending).status_code == 404
    assert run(pending) == "skipped"  # the queued task finds it cancelled

    done = kick_off(service_account, "_type=Patient")
    run(done)
    directory = export_directory(export_id(done))
    assert list(directory.iterdir())
    assert service_account.client.delete(done, **service_account.headers).status_code == 202
    assert not directory.exists()
    assert service_account.get(done).status_code == 404
    assert service_account.client.delete(done, **service_account.headers).status_code == 404


def test_cancel_during_the_run_stops_the_task_and_removes_its_files(
    service_account: FhirTestClient, settings: Any
) -> None:
    settings.BULK_EXPORT_FILE_MAX_RESOURCES = 1
    for _ in range(3):
        create_patient(service_account)
    status_path = kick_off(service_account, "_type=Patient")
    real_save = bulk._save
    saves: list[dict[str, Any]] = []

    def cancel_after_the_first_part(export_pk: Any, **fields: Any) -> None:
        saves.append(fields)
        if str(fields.get("progress", "")).startswith("Patient:"):  # the first part is written
            assert service_account.client.delete(status_path, **service_account.headers).status_code == 202
        real_save(export_pk, **fields)

    with mock.patch.object(bulk, "_save", side_effect=cancel_after_the_first_part):
        assert run(status_path) == "cancelled"
    assert len([s for s in saves if str(s.get("progress", "")).startswith("Patient:")]) == 1  # stopped there
    assert not export_directory(export_id(status_path)).exists()
    assert BulkExport.objects.get().status == BulkExport.Status.CANCELLED


def test_a_failed_export_answers_500_at_the_status_url(service_account: FhirTestClient, settings: Any) -> None:
    create_patient(service_account)
    blocker = Path(settings.BULK_EXPORT_DIR)
    blocker.parent.mkdir(parents=True, exist_ok=True)
    blocker.write_text("a file where the export directory should be")  # the task cannot write there
    status_path = kick_off(service_account, "_type=Patient")
    assert run(status_path) == "failed"
    response = service_account.get(status_path)
    assert response.status_code == 500
    assert response.json()["resourceType"] == "OperationOutcome"
    assert "failed" in response.json()["issue"][0]["diagnostics"]


def test_sweep_deletes_expired_files_and_fails_silent_exports(service_account: FhirTestClient) -> None:
    create_patient(service_account)
    done = kick_off(service_account, "_type=Patient")
    run(done)
    directory = export_directory(export_id(done))
    assert directory.exists()
    assert fhir_bulk_export_sweep.apply().get() == {"expired": 0, "failed": 0}  # not yet expired
    BulkExport.objects.filter(pk=export_id(done)).update(expires_at=datetime.now(UTC) - timedelta(seconds=1))

    lost = kick_off(service_account, "_type=Patient")  # its worker "died": no progress for hours
    BulkExport.objects.filter(pk=export_id(lost)).update(updated_at=datetime.now(UTC) - timedelta(days=1))

    assert fhir_bulk_export_sweep.apply().get() == {"expired": 1, "failed": 1}
    assert not directory.exists()
    assert service_account.get(done).status_code == 404
    assert service_account.get(lost).status_code == 500


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_export_through_a_live_worker_and_broker(live_stack: Any) -> None:
    headers = {"Authorization": f"Bearer {live_stack.token()}"}
    created = requests.post(
        f"{live_stack.base}/fhir/Patient",
        json={"resourceType": "Patient", "gender": "female"},
        headers={**headers, "Content-Type": "application/fhir+json"},
        timeout=30,
    )
    assert created.status_code == 201, created.text
    kickoff = requests.get(
        f"{live_stack.base}/fhir/$export?_type=Patient",
        headers={**headers, "Accept": "application/fhir+json", "Prefer": "respond-async"},
        timeout=30,
    )
    assert kickoff.status_code == 202, kickoff.text
    deadline = time.monotonic() + 60
    status = kickoff
    while time.monotonic() < deadline:
        status = requests.get(kickoff.headers["Content-Location"], headers=headers, timeout=30)
        if status.status_code != 202:
            break
        time.sleep(0.5)
    assert status.status_code == 200, status.text
    output = status.json()["output"]
    assert [(o["type"], o["count"]) for o in output] == [("Patient", 1)]
    lines = requests.get(output[0]["url"], headers=headers, timeout=30).text.splitlines()
    assert [json.loads(line)["id"] for line in lines] == [created.json()["id"]]


def test_tasks_run_on_the_maintenance_queue_and_beat_sweeps(settings: Any) -> None:
    from cds.celery import app

    for name in ("fhir.bulk_export_run", "fhir.bulk_export_sweep"):
        assert app.amqp.router.route({}, name)["queue"].name == settings.CELERY_MAINTENANCE_QUEUE
    assert settings.CELERY_BEAT_SCHEDULE["bulk-export-sweep"]["task"] == "fhir.bulk_export_sweep"
