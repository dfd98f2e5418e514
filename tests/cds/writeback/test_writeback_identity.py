"""Write-back identity: per-job UUID identifiers under this installation's system; collisions fail loudly."""

from __future__ import annotations

import copy
from typing import Any
from unittest import mock

import pytest
import requests

from cds.analysis.models import AnalysisJob
from cds.fhir.models import StoredResource
from cds.pipeline.analysis import analysis_results_store
from cds.writeback.client import WritebackConfig, fhir_transaction_post, match_owner_mismatch
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_deliver, outbox_enqueue
from tests.cds.factories import make_result
from tests.cds.writeback.conftest import Sekmet
from tests.cds.writeback.helpers import identifier, result_bundle

pytestmark = pytest.mark.django_db


def _analysed(service_account: Any, ecg_factory: Any, ecg_id: int) -> AnalysisJob:
    observation_id = service_account.post("/fhir/Observation", ecg_factory(ecg_id)).json()["id"]
    job = AnalysisJob.objects.select_related("recording").get(recording__logical_id=observation_id)
    analysis_results_store(job=job, result=make_result(score=2.5))
    return job


def test_it_identifies_results_by_the_jobs_stored_uuid_under_the_installations_system(
    settings: Any, service_account: Any, ecg_factory: Any
) -> None:
    settings.WRITEBACK_IDENTIFIER_SYSTEM = "https://cds.st-marys.example/identifiers/ecg-analysis"
    first, second = _analysed(service_account, ecg_factory, 63), _analysed(service_account, ecg_factory, 9)
    assert first.writeback_uuid != second.writeback_uuid
    stored_uuid = AnalysisJob.objects.get(pk=first.pk).writeback_uuid
    assert stored_uuid == first.writeback_uuid  # generated once, kept in the row
    for job in (first, second):
        results = [
            r
            for r in StoredResource.objects.filter(is_current=True).exclude(resource_type__in=["Patient", "Device"])
            if r.resource_type != "Observation" or r.content.get("derivedFrom")
        ]
        mine = [
            r for r in results if any(str(job.writeback_uuid) in i["value"] for i in r.content.get("identifier", []))
        ]
        assert len(mine) >= 4  # score, intervals, report, task
        for resource in mine:
            for item in resource.content["identifier"]:
                assert item["system"] == "https://cds.st-marys.example/identifiers/ecg-analysis"
                assert item["value"].startswith(f"job-{job.writeback_uuid}-")
                assert f"job-{job.pk}-" not in item["value"]
        provenance = StoredResource.objects.get(
            resource_type="Provenance", logical_id=f"ecgcds-job-{job.writeback_uuid}"
        )
        assert provenance.is_current


def test_it_finds_the_owner_element_that_differs() -> None:
    ours = {"reference": "http://cds/fhir/Observation/e1", "identifier": {"system": "urn:ecg", "value": "e-1"}}
    theirs = {"reference": "http://cds/fhir/Observation/e2", "identifier": {"system": "urn:ecg", "value": "e-2"}}
    resolved = {"reference": "Observation/123", "identifier": {"system": "urn:ecg", "value": "e-1"}}
    assert match_owner_mismatch({"derivedFrom": [ours]}, {"derivedFrom": [ours]}) is None
    assert match_owner_mismatch({"derivedFrom": [ours]}, {"derivedFrom": [resolved]}) is None  # EHR's own id
    assert match_owner_mismatch({"derivedFrom": [ours]}, {"derivedFrom": [theirs]}) == "derivedFrom"
    assert match_owner_mismatch({"subject": ours}, {}) == "subject"
    assert match_owner_mismatch({"code": {}}, {}) is None


def test_it_fails_loudly_when_an_if_none_exist_matches_another_ecgs_result(
    writeback_settings: Any, sekmet: Sekmet
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    job_key, bundle = result_bundle()
    # Another ECG's score already sits at the EHR under our identifier (a colliding system).
    squatter = copy.deepcopy(
        next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    )
    squatter["derivedFrom"] = [
        {
            "reference": "http://elsewhere/fhir/Observation/other",
            "identifier": {"system": "urn:oid:1.2.3.4.ecg", "value": "other"},
        }
    ]
    squatter.pop("device", None), squatter.pop("hasMember", None)
    created = requests.post(
        f"{sekmet.base_url}/Observation", json=squatter, headers={"Content-Type": "application/fhir+json"}, timeout=10
    )
    assert created.status_code == 201, created.text
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
    delivered = outbox_deliver(message_id=message.pk)
    assert delivered is not None and delivered.status == OutboxMessage.Status.FAILED
    assert "identifier collision" in delivered.last_error and "derivedFrom" in delivered.last_error
    # A replay of our own Bundle, by contrast, matches our own results and passes the check.
    _, own = result_bundle()
    fhir_transaction_post(config=WritebackConfig.from_settings(), bundle=own)
    again = fhir_transaction_post(config=WritebackConfig.from_settings(), bundle=own)
    assert set(again.entry_statuses) == {"200 OK"}
    assert len(sekmet.search("Observation", identifier=identifier(f"{job_key}-anomaly-score"))) == 1
