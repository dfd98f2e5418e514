"""``/metrics`` (issue 16): Prometheus text with job, outbox, flag-rate and queue state, request ids on responses."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from cds.analysis.models import AnalysisJob
from cds.analysis.services import analysis_job_fail
from cds.pipeline.tasks import analysis_job_run
from cds.writeback.models import OutboxMessage


def scrape(client: Client, **headers: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Return every sample of ``GET /metrics`` keyed by (name, sorted labels)."""
    response = client.get("/metrics", **headers)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.mark.django_db
def test_it_reports_jobs_stages_outbox_and_flag_rates(
    service_account: Any, ecg_factory: Any, django_capture_on_commit_callbacks: Any
) -> None:
    before = scrape(Client())
    jobs = []
    for ecg_id, identifier in ((9, "a"), (63, "b"), (65, "c")):
        response = service_account.post("/fhir/Observation", ecg_factory(ecg_id, identifier=identifier))
        assert response.status_code == 201
        jobs.append(AnalysisJob.objects.get(recording__logical_id=response.json()["id"]))
    with django_capture_on_commit_callbacks(execute=True):
        assert analysis_job_run(jobs[0].pk) == "succeeded"  # the real in-process models
        analysis_job_fail(job_id=jobs[1].pk, error="test")
    AnalysisJob.objects.filter(pk=jobs[2].pk).update(created_at=timezone.now() - datetime.timedelta(seconds=90))
    old = timezone.now() - datetime.timedelta(minutes=30)
    OutboxMessage.objects.create(key="m-1", bundle={}, status=OutboxMessage.Status.PENDING)
    OutboxMessage.objects.filter(key="m-1").update(created_at=old)
    OutboxMessage.objects.create(key="m-2", bundle={}, status=OutboxMessage.Status.DELIVERED)

    after = scrape(Client())
    assert after[("cds_analysis_jobs", (("status", "succeeded"),))] == 1
    assert after[("cds_analysis_jobs", (("status", "failed"),))] == 1
    assert after[("cds_analysis_jobs", (("status", "pending"),))] == 1
    assert after[("cds_analysis_jobs", (("status", "running"),))] == 0
    assert 89 <= after[("cds_analysis_oldest_pending_seconds", ())] < 200
    assert after[("cds_outbox_messages", (("status", "pending"),))] == 1
    assert after[("cds_outbox_messages", (("status", "delivered"),))] == 1
    assert 1799 <= after[("cds_outbox_oldest_seconds", (("status", "pending"),))] < 1900
    assert after[("cds_outbox_oldest_seconds", (("status", "failed"),))] == 0

    # One succeeded job: one prediction per model, each with its version's flag rate in [0, 1].
    rates = {labels: value for (name, labels), value in after.items() if name == "cds_prediction_flag_rate"}
    models = {dict(labels)["model"] for labels in rates}
    assert "ecg-anomaly-detector" in models, rates
    assert all(0.0 <= value <= 1.0 for value in rates.values())

    # Event metrics of this process (the test runs the task in-process): counted once, stages timed.
    def delta(name: str, labels: tuple[tuple[str, str], ...]) -> float:
        return after.get((name, labels), 0.0) - before.get((name, labels), 0.0)

    assert delta("cds_analysis_jobs_finished_total", (("status", "succeeded"),)) == 1
    assert delta("cds_analysis_jobs_finished_total", (("status", "failed"),)) == 1
    stages = {dict(labels)["stage"] for (name, labels) in after if name == "cds_analysis_job_stage_seconds_count"}
    assert {"load", "store"} <= stages, stages
    assert (
        delta(
            "cds_http_request_seconds_count",
            (("method", "POST"), ("route", "fhir/<str:resource_type>"), ("status", "2xx")),
        )
        == 3
    )


@pytest.mark.django_db
def test_it_reports_the_queue_depth_from_the_broker_or_says_it_cannot(settings: Any) -> None:
    samples = scrape(Client())
    assert samples[("cds_broker_up", ())] == 1  # the real RabbitMQ of the test run
    queues = {dict(labels)["queue"] for (name, labels) in samples if name == "cds_queue_depth"}
    assert queues == {
        settings.CELERY_TASK_DEFAULT_QUEUE,
        settings.CELERY_WRITEBACK_QUEUE,
        settings.CELERY_MAINTENANCE_QUEUE,
    }

    settings.CELERY_BROKER_URL = "amqp://guest:guest@127.0.0.1:1//"  # nothing listens there
    samples = scrape(Client())
    assert samples[("cds_broker_up", ())] == 0
    assert not any(name == "cds_queue_depth" for (name, _) in samples)


@pytest.mark.django_db
def test_it_asks_for_the_token_when_one_is_set(settings: Any) -> None:
    settings.METRICS_TOKEN = "scrape-secret"
    assert Client().get("/metrics").status_code == 401
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    scrape(Client(), HTTP_AUTHORIZATION="Bearer scrape-secret")


@pytest.mark.django_db
def test_it_echoes_a_well_formed_request_id_and_replaces_any_other(client: Client) -> None:
    assert client.get("/healthz", HTTP_X_REQUEST_ID="ehr-42.a")["X-Request-ID"] == "ehr-42.a"
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID='has spaces" and quotes')["X-Request-ID"]
    assert replaced != 'has spaces" and quotes' and len(replaced) == 32
    assert client.get("/healthz")["X-Request-ID"] != client.get("/healthz")["X-Request-ID"]
