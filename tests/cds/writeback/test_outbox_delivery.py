"""Write-back against a real R4 server (sekmet): the full path, replays, and refusals."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.utils import timezone

from cds.analysis.models import AnalysisJob
from cds.core.exceptions import ApplicationError
from cds.pipeline.analysis import analysis_results_store
from cds.writeback.client import WritebackConfig, fhir_transaction_post
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_deliver, outbox_enqueue, outbox_message_requeue, outbox_sweep
from cds.writeback.tasks import outbox_message_deliver
from tests.cds.analysis.test_results_store import make_result
from tests.cds.writeback.conftest import Sekmet
from tests.cds.writeback.helpers import identifier, result_bundle

pytestmark = pytest.mark.django_db


def written_set(sekmet: Sekmet, job_key: str) -> dict[str, list[dict[str, Any]]]:
    """Return what sekmet holds for one analysis, by role."""
    return {
        "score": sekmet.search("Observation", identifier=identifier(f"{job_key}-anomaly-score")),
        "interval-0": sekmet.search("Observation", identifier=identifier(f"{job_key}-interval-0")),
        "interval-1": sekmet.search("Observation", identifier=identifier(f"{job_key}-interval-1")),
        "report": sekmet.search("DiagnosticReport", identifier=identifier(f"{job_key}-report")),
        "task": sekmet.search("Task", identifier=identifier(f"{job_key}-review")),
        "device": sekmet.search(
            "Device", identifier="urn:ecg-cds:analysis:device|ecg-anomaly-detector-1.0.0+ecg-foundation-1.0.0"
        ),
    }


def assert_written_once(sekmet: Sekmet, job_key: str) -> dict[str, list[dict[str, Any]]]:
    found = written_set(sekmet, job_key)
    assert {role: len(resources) for role, resources in found.items()} == dict.fromkeys(found, 1)
    assert sekmet.get(f"Provenance/ecgcds-{job_key}").status_code == 200
    return found


def test_it_writes_an_analysed_ecg_back_through_the_outbox(
    writeback_settings: Any,
    sekmet: Sekmet,
    service_account: Any,
    ecg_factory: Any,
    patient_resource: dict[str, Any],
    django_capture_on_commit_callbacks: Any,
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    ecg_id = service_account.post(
        "/fhir/Observation", ecg_factory(63, patient_reference=f"Patient/{patient_id}")
    ).json()["id"]
    job = AnalysisJob.objects.get(recording__logical_id=ecg_id)

    with (
        mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True) as delay,
        django_capture_on_commit_callbacks(execute=True),
    ):
        analysis_results_store(job=job, result=make_result(score=2.5))
    message = OutboxMessage.objects.get(key=f"analysis-job:{job.pk}")
    delay.assert_called_once_with(message.pk)
    assert message.status == OutboxMessage.Status.PENDING and message.attempts == 0

    assert outbox_message_deliver(message.pk) == OutboxMessage.Status.DELIVERED

    message.refresh_from_db()
    assert message.attempts == 1 and message.delivered_at is not None and message.last_error == ""
    assert message.response["status"] == 200
    # The Device is shared by every analysis with these model versions: created once per server.
    device_status, *created = message.response["entry_statuses"]
    assert device_status in {"200 OK", "201 Created"} and created == ["201 Created"] * 6
    assert len(message.response["locations"]) == 7
    found = assert_written_once(sekmet, f"job-{job.writeback_uuid}")
    report = found["report"][0]
    assert report["status"] == "preliminary" and report["conclusion"].startswith("sinus rhythm")
    assert report["meta"]["security"][0]["code"] == "AIAST"
    # urn:uuid references became sekmet's own ids; references to our server stay absolute.
    assert {r["reference"] for r in report["result"]} == {
        f"Observation/{found[role][0]['id']}" for role in ("score", "interval-0", "interval-1")
    }
    assert found["task"][0]["focus"]["reference"] == f"DiagnosticReport/{report['id']}"
    score = found["score"][0]
    assert score["derivedFrom"][0]["reference"] == f"http://testserver/fhir/Observation/{ecg_id}"
    assert score["subject"]["identifier"] == patient_resource["identifier"][0]


def test_it_never_resends_a_delivered_message(writeback_settings: Any, sekmet: Sekmet) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    job_key, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
    assert outbox_deliver(message_id=message.pk) is not None

    with mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True) as post:
        assert outbox_message_deliver(message.pk) is None  # a redelivered task: nothing to claim
        outbox_sweep(now=timezone.now() + timedelta(days=1))
    post.assert_not_called()
    message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED and message.attempts == 1


def test_it_writes_each_resource_once_when_a_lost_send_is_replayed(writeback_settings: Any, sekmet: Sekmet) -> None:
    """A worker dies after the EHR committed but before we recorded it: the sweep resends, harmlessly."""
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    job_key, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True) as delay:
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
        fhir_transaction_post(config=WritebackConfig.from_settings(), bundle=copy.deepcopy(bundle))  # the lost send
        claimed_at = timezone.now() - timedelta(seconds=writeback_settings.WRITEBACK_SENDING_TIMEOUT_S + 1)
        OutboxMessage.objects.filter(pk=message.pk).update(status="sending", attempts=1, claimed_at=claimed_at)

        assert outbox_sweep() == {"requeued_pending": 0, "recovered_sending": 1, "failed": 0}
    delay.assert_called_once_with(message.pk)

    message = outbox_deliver(message_id=message.pk)
    assert message is not None and message.status == OutboxMessage.Status.DELIVERED and message.attempts == 2
    # Conditional creates matched what the lost send wrote; Provenance was PUT onto the same id.
    assert message.response["entry_statuses"] == ["200 OK"] * 7
    assert_written_once(sekmet, job_key)

    # The same Bundle once more, straight to the server: still exactly one of each.
    answer = fhir_transaction_post(config=WritebackConfig.from_settings(), bundle=bundle)
    assert answer.entry_statuses == ["200 OK"] * 7
    assert_written_once(sekmet, job_key)


def test_it_enqueues_once_per_key(writeback_settings: Any, django_capture_on_commit_callbacks: Any) -> None:
    _, bundle = result_bundle()
    _, other = result_bundle()
    with (
        mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True) as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        first = outbox_enqueue(key="analysis-job:replayed", bundle=bundle)
        second = outbox_enqueue(key="analysis-job:replayed", bundle=other)
    assert second.pk == first.pk and len(callbacks) == 1
    delay.assert_called_once_with(first.pk)
    stored = OutboxMessage.objects.get(key="analysis-job:replayed")
    assert stored.bundle == bundle and stored.status == OutboxMessage.Status.PENDING


def test_it_fails_at_once_with_the_servers_diagnostics_when_the_bundle_is_refused(
    writeback_settings: Any, sekmet: Sekmet
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    job_key, bundle = result_bundle()
    del bundle["entry"][1]["resource"]["status"]  # Observation.status is required (1..1)
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.apply_async", autospec=True) as retry:
        message = outbox_deliver(message_id=message.pk)
    retry.assert_not_called()
    assert message is not None and message.status == OutboxMessage.Status.FAILED and message.attempts == 1
    assert message.last_error.startswith("HTTP 4") and "status" in message.last_error
    assert message.response == {"status": int(message.last_error[5:8])}
    # The transaction was rolled back on the server: nothing of it was written.
    assert sekmet.search("DiagnosticReport", identifier=identifier(f"{job_key}-report")) == []


def test_it_leaves_messages_pending_while_write_back_is_disabled(settings: Any) -> None:
    _, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        message = outbox_enqueue(key="analysis-job:disabled", bundle=bundle)
    settings.WRITEBACK_ENABLED = False
    with mock.patch("cds.writeback.services.fhir_transaction_post", autospec=True) as post:
        assert outbox_deliver(message_id=message.pk) is None
    post.assert_not_called()
    assert OutboxMessage.objects.get(pk=message.pk).status == OutboxMessage.Status.PENDING


def test_it_delivers_a_failed_message_an_operator_requeued(
    writeback_settings: Any, sekmet: Sekmet, django_capture_on_commit_callbacks: Any
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = "http://127.0.0.1:9/fhir"  # discard port: refused
    writeback_settings.WRITEBACK_MAX_ATTEMPTS = 1
    job_key, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True) as delay:
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
        message = outbox_deliver(message_id=message.pk)
        assert message is not None and message.status == OutboxMessage.Status.FAILED
        assert message.last_error.startswith("gave up after 1 attempts; last error: FHIR endpoint unreachable")

        writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url  # the operator fixed the address
        with django_capture_on_commit_callbacks(execute=True):
            assert outbox_message_requeue(message_id=message.pk)
            assert not outbox_message_requeue(message_id=message.pk)  # only a failed message is requeued
    delay.assert_called_once_with(message.pk)
    message = outbox_deliver(message_id=message.pk)
    assert message is not None and message.status == OutboxMessage.Status.DELIVERED and message.attempts == 1
    assert_written_once(sekmet, job_key)


def test_it_refuses_to_queue_anything_but_a_transaction_bundle() -> None:
    with pytest.raises(ApplicationError, match="transaction Bundles"):
        outbox_enqueue(key="analysis-job:batch", bundle={"resourceType": "Bundle", "type": "batch", "entry": []})
    assert not OutboxMessage.objects.filter(key="analysis-job:batch").exists()
