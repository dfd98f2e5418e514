"""Analysis job transitions and the Celery task wrapper (called directly, docs/style.md G5)."""

from __future__ import annotations

import datetime
import io
import json
import time
from typing import Any
from unittest import mock

import numpy as np
import pytest
import time_machine
from django.core.management import call_command

from cds.analysis.models import AnalysisJob, Prediction
from cds.analysis.services import analysis_job_claim, analysis_jobs_requeue_stuck
from cds.pipeline.analysis import analysis_job_execute
from cds.pipeline.tasks import analysis_job_run
from tests.conftest import LEADS_12

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(service_account: Any, ecg_factory: Any) -> AnalysisJob:
    response = service_account.post("/fhir/Observation", ecg_factory(9))
    assert response.status_code == 201
    return AnalysisJob.objects.get(recording__logical_id=response.json()["id"])


def test_it_runs_a_pending_job_to_success(job: AnalysisJob) -> None:
    assert analysis_job_run(job.pk) == "succeeded"
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.SUCCEEDED
    assert job.attempts == 1 and job.started_at and job.finished_at
    assert job.model_name == "ecg-anomaly-detector"
    assert job.model_version.startswith("detector-") and job.triton_model_version == "in-process"
    assert {"load_ms", "preprocess_ms", "model_ms", "postprocess_ms"} <= set(job.timings)
    prediction = Prediction.objects.get(job=job, model_name="ecg-anomaly-detector")
    assert prediction.model_version == job.model_version
    assert prediction.score is not None and np.isfinite(prediction.score)
    assert prediction.flagged == (prediction.score >= prediction.threshold)
    assert set(prediction.per_lead_scores) == set(LEADS_12)
    assert prediction.input_provenance["waveform_sha256"] == job.recording.waveform_sha256
    # The foundation model ran beside it: probability, report text, review priority, leads used.
    foundation = Prediction.objects.get(job=job, model_name="ecg-foundation")
    assert foundation.model_version.startswith("foundation-") and foundation.server_model_version == "in-process"
    assert 0.0 <= foundation.probabilities["abnormal"] <= 1.0 and set(foundation.probabilities) >= {"NORM", "MI"}
    assert foundation.report_text and 0.0 <= foundation.review_priority <= 1.0
    assert foundation.input_provenance["leads_used"] == list(LEADS_12)
    assert {"foundation_preprocess_ms", "foundation_model_ms"} <= set(job.timings)


def test_it_fails_the_job_with_the_reason_when_the_ecg_cannot_be_scored(service_account: Any, ecg_factory: Any) -> None:
    from cds.ecg.encoding import ecg_observation

    flat = ecg_observation(
        np.zeros((12, 5000)), sample_rate_hz=500, leads=LEADS_12, identifier=("urn:oid:1.2.3.4.ecg", "flat-1")
    )
    response = service_account.post("/fhir/Observation", flat)
    assert response.status_code == 201, response.content
    job = AnalysisJob.objects.get(recording__logical_id=response.json()["id"])
    assert analysis_job_run(job.pk) == "failed"
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.FAILED
    assert "UnscorableEcg" in job.error and "no usable lead" in job.error
    assert not Prediction.objects.filter(job=job).exists()


def test_it_puts_the_job_back_and_retries_when_triton_is_unreachable(job: AnalysisJob, settings: Any) -> None:
    from cds.analysis.analyzer import analyzer
    from inference.errors import TritonUnavailable
    from inference.local_triton import free_port

    # A real client against a port nobody listens on: connection refused, a transient error.
    settings.INFERENCE_BACKEND = "triton"
    settings.TRITON_URL = f"127.0.0.1:{free_port()}"
    settings.TRITON_HTTP_URL = ""
    settings.TRITON_TIMEOUT_S = 1.0
    analyzer.cache_clear()
    try:
        with pytest.raises(TritonUnavailable):
            analysis_job_execute(job_id=job.pk)
        job.refresh_from_db()
        assert job.status == AnalysisJob.Status.PENDING and "TritonUnavailable" in job.error
        # Through Celery, once the retry budget is spent: visibly failed, never dropped.
        spent = time.time() - settings.ANALYSIS_RETRY_BUDGET_S - 1
        result = analysis_job_run.apply(args=[job.pk], kwargs={"first_failure_at": spent})
    finally:
        analyzer.cache_clear()
    assert result.failed()
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.FAILED and "TritonUnavailable" in job.error
    assert not Prediction.objects.filter(job=job).exists()


def test_it_is_safe_to_run_twice(job: AnalysisJob) -> None:
    assert analysis_job_run(job.pk) == "succeeded"
    assert analysis_job_run(job.pk) is None
    job.refresh_from_db()
    assert job.attempts == 1


def test_it_lets_only_one_claim_through(job: AnalysisJob) -> None:
    assert analysis_job_claim(job_id=job.pk) is not None
    assert analysis_job_claim(job_id=job.pk) is None


def test_it_skips_a_job_that_no_longer_exists() -> None:
    assert analysis_job_execute(job_id=999_999) is None


def test_it_marks_the_job_failed_with_the_reason_when_the_task_crashes(job: AnalysisJob) -> None:
    # A waveform whose bytes do not match its metadata makes the load step raise.
    recording = job.recording
    recording.samples = b"\x00" * 10
    recording.save(update_fields=["samples"])
    result = analysis_job_run.apply(args=[job.pk])
    assert result.failed()
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.FAILED
    assert "ValueError" in job.error


def test_it_requeues_lost_pending_jobs_and_recovers_stuck_running_ones(
    job: AnalysisJob, django_capture_on_commit_callbacks: Any
) -> None:
    assert analysis_job_claim(job_id=job.pk) is not None  # a worker took it, then died
    with mock.patch("cds.pipeline.tasks.analysis_job_run.delay", autospec=True) as delay:
        assert (
            analysis_jobs_requeue_stuck(pending_after_s=300, running_after_s=240, max_attempts=3)["recovered_running"]
            == 0
        )
        with time_machine.travel(job.created_at + datetime.timedelta(minutes=10)):
            counts = analysis_jobs_requeue_stuck(pending_after_s=300, running_after_s=240, max_attempts=3)
    assert counts == {"requeued_pending": 0, "recovered_running": 1, "failed": 0}
    delay.assert_called_once_with(job.pk)
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.PENDING
    assert analysis_job_run(job.pk) == "succeeded"


def test_it_fails_a_job_whose_worker_keeps_dying(job: AnalysisJob) -> None:
    AnalysisJob.objects.filter(pk=job.pk).update(attempts=2)
    analysis_job_claim(job_id=job.pk)
    with (
        mock.patch("cds.pipeline.tasks.analysis_job_run.delay", autospec=True),
        time_machine.travel(job.created_at + datetime.timedelta(minutes=10)),
    ):
        counts = analysis_jobs_requeue_stuck(pending_after_s=300, running_after_s=240, max_attempts=3)
    assert counts["failed"] == 1
    job.refresh_from_db()
    assert job.status == AnalysisJob.Status.FAILED and "3 times" in job.error


def test_the_job_listing_leads_with_the_verdicts_own_evidence(job: AnalysisJob) -> None:
    """`analysis_jobs --json` (what `make demo` prints) gives the combined evidence the verdict rests on."""
    assert analysis_job_run(job.pk) == "succeeded"
    out = io.StringIO()
    call_command("analysis_jobs", "--json", stdout=out)
    row = next(r for r in json.loads(out.getvalue()) if r["job"] == job.pk)
    interpretation = Prediction.objects.get(job=job, model_name="ecg-interpretation")
    assert row["combined_probability"] == interpretation.score and row["combined_threshold"] == interpretation.threshold
    assert row["flagged"] == interpretation.flagged
    boxes = {
        r.get("box") or n
        for n, r in enumerate(Prediction.objects.get(job=job, model_name="ecg-anomaly-detector").intervals)
    }
    assert row["boxes"] == len(boxes) <= row["intervals"]
