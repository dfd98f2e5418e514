"""Time-based retries of analysis jobs (issue 16): a job waits out an hour's Triton outage, then fails visibly.

The task runs through Celery (``apply``: each retry runs at once, in order) on the real database
and the real in-process models; only the analyzer seam fails while the simulated outage lasts, and
moves the clock as a real Triton call plus the backoff would.
"""

from __future__ import annotations

import time
from typing import Any
from unittest import mock

import pytest
import time_machine
from celery.exceptions import SoftTimeLimitExceeded

from cds.analysis.analyzer import analyzer as real_analyzer
from cds.analysis.models import AnalysisJob
from cds.pipeline.tasks import analysis_job_run
from inference.errors import TritonUnavailable


@pytest.fixture
def job(service_account: Any, ecg_factory: Any) -> AnalysisJob:
    response = service_account.post("/fhir/Observation", ecg_factory(9))
    assert response.status_code == 201
    return AnalysisJob.objects.get(recording__logical_id=response.json()["id"])


class Outage:
    """An analyzer that is unreachable until ``ends_at`` (epoch s); each failed try costs ``step_s``."""

    def __init__(self, traveller: Any, *, ends_at: float, step_s: float, error: BaseException) -> None:
        self.traveller, self.ends_at, self.step_s, self.error = traveller, ends_at, step_s, error
        self.failed_tries = 0

    def analyse(self, ecg: Any) -> Any:
        if time.time() < self.ends_at:
            self.failed_tries += 1
            self.traveller.shift(self.step_s)  # the client's own tries and the task's backoff
            raise self.error
        return real_analyzer().analyse(ecg)


def _run_through(job: AnalysisJob, *, outage_s: float, step_s: float, error: BaseException) -> Outage:
    with time_machine.travel(time.time(), tick=True) as traveller:
        outage = Outage(traveller, ends_at=time.time() + outage_s, step_s=step_s, error=error)
        with mock.patch("cds.pipeline.analysis.analyzer", return_value=outage):
            analysis_job_run.apply(args=[job.pk])
    job.refresh_from_db()
    return outage


def test_a_job_waits_out_an_hour_of_triton_outage(job: AnalysisJob, settings: Any) -> None:
    # Production settings: the default budget. Each failed try + backoff is at most the 120 s cap.
    assert settings.ANALYSIS_RETRY_BUDGET_S >= 3600 + settings.ANALYSIS_RETRY_BACKOFF_MAX_S
    outage = _run_through(job, outage_s=3600, step_s=120, error=TritonUnavailable("connection refused"))
    assert job.status == AnalysisJob.Status.SUCCEEDED, job.error
    assert outage.failed_tries == 30  # retried all hour, never given up


def test_a_job_fails_visibly_once_the_budget_is_spent(job: AnalysisJob, settings: Any) -> None:
    settings.ANALYSIS_RETRY_BUDGET_S = 600
    outage = _run_through(job, outage_s=10_000, step_s=60, error=TritonUnavailable("connection refused"))
    assert job.status == AnalysisJob.Status.FAILED
    assert "TritonUnavailable" in job.error
    assert 10 <= outage.failed_tries <= 11  # 600 s of 60 s tries, then failed


def test_a_soft_time_limit_is_transient(job: AnalysisJob) -> None:
    outage = _run_through(job, outage_s=300, step_s=100, error=SoftTimeLimitExceeded())
    assert job.status == AnalysisJob.Status.SUCCEEDED, job.error
    assert outage.failed_tries == 3
    assert job.attempts == 4  # each try claimed the job again: it went back to pending every time
