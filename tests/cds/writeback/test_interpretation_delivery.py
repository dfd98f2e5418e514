"""The write-back set with the interpretation (measurements, ST, findings, urgent Task) on a real R4 server."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest

from cds.analysis.fhir_results import result_entries, transaction_bundle
from cds.writeback.client import WritebackConfig, fhir_transaction_post
from tests.cds.factories import flagged_clinical, make_measurements, make_result, with_interpretation
from tests.cds.writeback.conftest import Sekmet
from tests.cds.writeback.helpers import ECG_REFERENCE, identifier

pytestmark = pytest.mark.django_db


def test_it_writes_the_interpretation_once_and_a_replay_creates_nothing(
    writeback_settings: Any, sekmet: Sekmet
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet.base_url
    job_key = f"job-{uuid.uuid4().hex[:12]}"
    measurements = make_measurements(pr_ms=None, not_measured={"pr_ms": "atrial fibrillation: no P waves"})
    result = with_interpretation(make_result(score=0.4), flagged_clinical(urgent=True), measurements)
    bundle = transaction_bundle(
        result_entries(result, job_key=job_key, ecg=ECG_REFERENCE, patient=None, issued="2024-03-01T10:05:00Z")
    )
    config = WritebackConfig.from_settings()
    first = fhir_transaction_post(config=config, bundle=copy.deepcopy(bundle))
    assert all(status.startswith(("200", "201")) for status in first.entry_statuses)
    assert first.entry_statuses.count("201 Created") >= len(bundle["entry"]) - 2  # Device may exist already
    (pr,) = sekmet.search("Observation", identifier=identifier(f"{job_key}-measurement-pr_ms"))
    assert pr["dataAbsentReason"]["coding"][0]["code"] == "not-applicable" and "valueQuantity" not in pr
    (task,) = sekmet.search("Task", identifier=identifier(f"{job_key}-review"))
    assert task["priority"] == "urgent"
    (report,) = sekmet.search("DiagnosticReport", identifier=identifier(f"{job_key}-report"))
    assert report["conclusionCode"][0]["coding"][0]["code"] == "164889003"
    assert len(report["result"]) == 1 + 2 + 8 + 1 + 3  # score, intervals, LOINC, ST, findings
    replay = fhir_transaction_post(config=config, bundle=bundle)
    assert replay.entry_statuses == ["200 OK"] * len(bundle["entry"])
