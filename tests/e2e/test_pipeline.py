"""End to end on real parts: FHIR POST -> Celery worker -> local Triton -> PostgreSQL -> our FHIR API -> EHR."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests

from cds.ecg.encoding import ecg_observation, ecg_transaction_bundle
from inference.analyzer import EcgInput, InProcessAnalyzer, TritonAnalyzer
from inference.errors import ModelNotFound, ModelVersionMismatch
from inference.local_triton import LocalTriton
from inference.triton_client import TritonClient
from tests.cds.writeback.conftest import Sekmet
from tests.conftest import LEADS_12, REPO_ROOT, read_sample_record
from tests.e2e.conftest import served_models
from tests.livestack import LiveStack, wait_for_job

pytestmark = pytest.mark.live
DETECTOR_CHECKPOINT = REPO_ROOT / "ecg_models" / "weights" / "detector.pt"


FOUNDATION_CHECKPOINT = REPO_ROOT / "ecg_models" / "weights" / "foundation.pt"
SERVES_FOUNDATION = "ecg_foundation" in served_models()


def served(client: TritonClient) -> TritonAnalyzer:
    """Return an analyzer for the models the shipped repository holds."""
    if SERVES_FOUNDATION:
        return TritonAnalyzer(client=client)
    return TritonAnalyzer(client=client, foundation_model=None)


def in_process() -> InProcessAnalyzer:
    return InProcessAnalyzer(
        detector_checkpoint=DETECTOR_CHECKPOINT,
        foundation_checkpoint=FOUNDATION_CHECKPOINT if SERVES_FOUNDATION else None,
    )


def sample_input(ecg_id: int) -> EcgInput:
    samples_uv, header = read_sample_record(ecg_id)
    return EcgInput(signal=samples_uv / 1000.0, rate_hz=float(header["fs"]), leads=LEADS_12)


def test_it_scores_through_triton_exactly_as_in_process(model_server: LocalTriton) -> None:
    remote_analyzer, local_analyzer = served(TritonClient(grpc_url=model_server.grpc_url)), in_process()
    for ecg_id in (9, 63, 131):
        ecg = sample_input(ecg_id)
        remote_result, local_result = remote_analyzer.analyse(ecg), local_analyzer.analyse(ecg)
        remote, here = remote_result.detector, local_result.detector
        assert remote.model_version == here.model_version  # the label travels in the served config
        assert remote.server_model_version == "ecg_detector/1"
        assert remote.score == pytest.approx(here.score, abs=1e-3)
        assert remote.threshold == here.threshold and remote.flagged == here.flagged
        assert [(i.lead, i.start_ms) for i in remote.intervals] == [(i.lead, i.start_ms) for i in here.intervals]
        np.testing.assert_allclose(remote.anomaly_map, here.anomaly_map, atol=1e-2, equal_nan=True)
        assert {"preprocess_ms", "triton_ms", "postprocess_ms"} <= set(remote.timings_ms)
        if SERVES_FOUNDATION:
            f_remote, f_here = remote_result.foundation, local_result.foundation
            assert f_remote is not None and f_here is not None
            assert f_remote.model_version == f_here.model_version
            assert f_remote.probability_abnormal == pytest.approx(f_here.probability_abnormal, abs=1e-3)
            assert f_remote.report_text == f_here.report_text and f_remote.report_text
            assert f_remote.review_priority == pytest.approx(f_here.review_priority, abs=1e-3)
            assert f_remote.leads_used == LEADS_12
            assert f_remote.server_model_version == "ecg_foundation/1"  # one request per ECG for both


def test_it_answers_over_http_too(model_server: LocalTriton) -> None:
    result = served(TritonClient(http_url=model_server.http_url)).analyse(sample_input(9))
    assert result.detector.server_model_version == "ecg_detector/1"
    assert (result.foundation is not None) == SERVES_FOUNDATION


def test_it_names_a_missing_model_or_a_version_it_does_not_serve(model_server: LocalTriton) -> None:
    with pytest.raises(ModelNotFound, match="ecg_nope"):
        TritonAnalyzer(client=TritonClient(grpc_url=model_server.grpc_url), detector_model="ecg_nope").analyse(
            sample_input(9)
        )
    pinned = TritonClient(grpc_url=model_server.grpc_url, expected_versions={"ecg_detector": "7"})
    with pytest.raises(ModelVersionMismatch, match="version 7"):
        served(pinned).analyse(sample_input(9))


@pytest.fixture
def triton_stack(tmp_path: Path, model_server: LocalTriton, ehr: Sekmet) -> Any:
    stack = LiveStack(
        tmp_path,
        env={
            "INFERENCE_BACKEND": "triton",
            "TRITON_URL": model_server.grpc_url,
            "TRITON_PROTOCOL": "grpc",
            "TRITON_HTTP_URL": model_server.http_url,
            "WRITEBACK_ENABLED": "true",
            "WRITEBACK_FHIR_BASE_URL": ehr.base_url,
            "WRITEBACK_AUTH": "none",
            "INFERENCE_FOUNDATION_ENABLED": str(SERVES_FOUNDATION).lower(),
        },
    )
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


@pytest.mark.django_db(transaction=True)
def test_it_takes_an_ecg_from_fhir_post_to_our_fhir_api_and_writes_it_back_to_the_ehr(
    triton_stack: LiveStack, ehr: Sekmet
) -> None:
    from cds.analysis.models import AnalysisJob, Prediction
    from cds.writeback.models import OutboxMessage

    samples_uv, header = read_sample_record(131)
    observation = ecg_observation(
        samples_uv,
        sample_rate_hz=header["fs"],
        leads=LEADS_12,
        identifier=("urn:oid:1.2.3.4.ecg", "e2e-131"),
        effective="2024-03-01T10:00:00Z",
    )
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "E2E-1"}],
        "gender": "male",
        "birthDate": "1950",
    }
    headers = {"Authorization": f"Bearer {triton_stack.token()}", "Content-Type": "application/fhir+json"}
    base = f"{triton_stack.base}/fhir"
    response = requests.post(
        base,
        data=json.dumps(ecg_transaction_bundle(patient=patient, observation=observation)),
        headers=headers,
        timeout=30,
    )
    assert response.status_code == 200, response.text
    ecg_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
    assert wait_for_job(ecg_id, timeout_s=90) == "succeeded"

    job = AnalysisJob.objects.get(recording__logical_id=ecg_id)
    assert job.triton_model_version == "ecg_detector/1" and job.model_version.startswith("detector-")
    assert job.timings["triton_ms"] > 0
    prediction = Prediction.objects.get(job=job, model_name="ecg-anomaly-detector")
    assert prediction.server_model_version == "ecg_detector/1"
    if SERVES_FOUNDATION:
        foundation = Prediction.objects.get(job=job, model_name="ecg-foundation")
        assert foundation.server_model_version == "ecg_foundation/1"  # one request: classifier and report
        assert job.timings["foundation_triton_ms"] > 0 and "foundation_report_ms" not in job.timings
        assert foundation.report_text and 0.0 <= foundation.review_priority <= 1.0

    found = requests.get(
        f"{base}/Observation", params={"derived-from": f"Observation/{ecg_id}"}, headers=headers, timeout=30
    )
    assert found.status_code == 200
    results = [e["resource"] for e in found.json()["entry"] if e["resource"]["resourceType"] == "Observation"]
    (score,) = [r for r in results if r["code"]["coding"][0]["code"] == "anomaly-score"]
    # The served score: the combined probability when the shipped combination fits the served models
    # (issue 12), else the detector's score; the flag is the one verdict either way.
    interpretation = Prediction.objects.get(job=job, model_name="ecg-interpretation")
    combined = (interpretation.report_details or {}).get("combined")
    served_score = combined["probability"] if combined else prediction.score
    assert score["valueQuantity"]["value"] == pytest.approx(served_score, abs=1e-3)
    assert score["interpretation"][0]["coding"][0]["code"] == ("A" if interpretation.flagged else "N")
    assert {"code": "AIAST"}.items() <= score["meta"]["security"][0].items()
    reports = requests.get(
        f"{base}/DiagnosticReport", params={"result": f"Observation/{score['id']}"}, headers=headers, timeout=30
    ).json()
    (report,) = [e["resource"] for e in reports["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"]
    assert report["status"] == "preliminary"

    # Written back to the EHR once, through the outbox.
    deadline = time.monotonic() + 60
    message = OutboxMessage.objects.get(key=f"analysis-job:{job.pk}")
    while message.status != OutboxMessage.Status.DELIVERED and time.monotonic() < deadline:
        time.sleep(0.5)
        message.refresh_from_db()
    assert message.status == OutboxMessage.Status.DELIVERED, message.last_error
    (remote_score,) = ehr.search(
        "Observation", identifier=score["identifier"][0]["system"] + "|" + score["identifier"][0]["value"]
    )
    assert remote_score["valueQuantity"]["value"] == pytest.approx(served_score, abs=1e-3)
    (remote_report,) = ehr.search(
        "DiagnosticReport", identifier=report["identifier"][0]["system"] + "|" + report["identifier"][0]["value"]
    )
    assert remote_report["status"] == "preliminary"
    assert remote_report["result"][0]["reference"].startswith("Observation/")


@pytest.mark.django_db
def test_it_reports_ready_when_triton_serves_the_detector(model_server: LocalTriton, settings: Any) -> None:
    from django.test import Client

    from cds.analysis.analyzer import analyzer

    settings.INFERENCE_BACKEND = "triton"
    settings.INFERENCE_FOUNDATION_ENABLED = SERVES_FOUNDATION
    settings.TRITON_URL, settings.TRITON_HTTP_URL = model_server.grpc_url, model_server.http_url
    analyzer.cache_clear()
    try:
        response = Client().get("/readyz")
    finally:
        analyzer.cache_clear()
    assert response.status_code == 200, response.content
