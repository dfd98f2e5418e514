"""Idempotent ingest: a resent ECG returns the stored one, and a lost job publish is not the client's problem."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.test import Client
from kombu.exceptions import OperationalError

from cds.analysis.models import AnalysisJob
from cds.analysis.services import ANALYSIS_JOB_RUN_TASK, analysis_jobs_requeue_stuck
from cds.ecg.models import EcgRecording
from tests.conftest import OTHER_ORGANIZATION, FhirTestClient, api_client_token


@pytest.mark.django_db
def test_it_returns_the_stored_ecg_when_the_same_identifier_is_sent_again(
    service_account: Any, ecg_factory: Any
) -> None:
    observation = ecg_factory(9, identifier="ecg-resent")
    first = service_account.post("/fhir/Observation", observation)
    again = service_account.post("/fhir/Observation", observation)  # no If-None-Exist: a plain retry
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"]
    assert EcgRecording.objects.count() == 1 and AnalysisJob.objects.count() == 1


@pytest.mark.django_db
def test_it_keeps_the_same_identifier_apart_in_another_organization(
    service_account: Any, ecg_factory: Any, client: Client
) -> None:
    other = FhirTestClient(Client(), api_client_token(client, "system/*.cruds", OTHER_ORGANIZATION))
    observation = ecg_factory(9, identifier="ecg-shared-number")
    assert service_account.post("/fhir/Observation", observation).status_code == 201
    assert other.post("/fhir/Observation", observation).status_code == 201
    assert EcgRecording.objects.count() == 2


@pytest.mark.django_db
def test_it_dedupes_a_resent_bundle_without_if_none_exist(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    from cds.ecg.encoding import ecg_transaction_bundle

    bundle = ecg_transaction_bundle(
        patient=patient_resource, observation=ecg_factory(9, identifier="ecg-bundle"), conditional=False
    )
    first = service_account.post("/fhir", bundle).json()["entry"][1]["response"]
    again = service_account.post("/fhir", bundle).json()["entry"][1]["response"]
    assert (first["status"], again["status"]) == ("201 Created", "200 OK")
    assert first["location"] == again["location"]
    assert EcgRecording.objects.count() == 1 and AnalysisJob.objects.count() == 1


@pytest.mark.django_db
def test_it_tells_a_create_only_client_where_the_resent_ecg_is_but_not_what_it_holds(
    ecg_factory: Any, client: Client
) -> None:
    feed = FhirTestClient(Client(), api_client_token(client, "system/Observation.c"))
    observation = ecg_factory(9, identifier="ecg-feed")
    first = feed.post("/fhir/Observation", observation)
    again = feed.post("/fhir/Observation", observation)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again["Location"] == first["Location"] and again.content == b""


@pytest.mark.django_db(transaction=True)
def test_it_answers_201_when_the_broker_is_down_and_the_sweep_publishes_the_job_later(
    service_account: Any, ecg_factory: Any
) -> None:
    """Committed is committed: a failed publish after commit must not read as "not applied" (a retry would duplicate)."""
    with mock.patch(
        "cds.analysis.services.enqueue", autospec=True, side_effect=OperationalError("broker unreachable")
    ) as enqueue:
        response = service_account.post("/fhir/Observation", ecg_factory(9, identifier="ecg-broker-down"))
    assert response.status_code == 201, response.content
    job = AnalysisJob.objects.get(recording__logical_id=response.json()["id"])
    enqueue.assert_called_once_with(ANALYSIS_JOB_RUN_TASK, job.pk)
    assert job.status == AnalysisJob.Status.PENDING  # recorded in the database, so recoverable

    with mock.patch("cds.analysis.services.enqueue", autospec=True) as enqueue:
        counts = analysis_jobs_requeue_stuck(pending_after_s=0, running_after_s=3600, max_attempts=3)
    assert counts["requeued_pending"] == 1
    enqueue.assert_called_once_with(ANALYSIS_JOB_RUN_TASK, job.pk)
