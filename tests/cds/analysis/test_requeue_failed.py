"""``manage.py analysis_jobs --requeue-failed`` (issue 16): failed jobs start over and run to success."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any
from unittest import mock

import pytest
from django.core.management import call_command

from cds.analysis.models import AnalysisJob
from cds.analysis.services import analysis_job_fail
from cds.pipeline.tasks import analysis_job_run


@pytest.fixture
def jobs(service_account: Any, ecg_factory: Any) -> list[AnalysisJob]:
    created = []
    for ecg_id, identifier in ((9, "r-1"), (63, "r-2"), (65, "r-3")):
        response = service_account.post("/fhir/Observation", ecg_factory(ecg_id, identifier=identifier))
        assert response.status_code == 201
        created.append(AnalysisJob.objects.get(recording__logical_id=response.json()["id"]))
    return created


def test_it_requeues_the_failed_jobs_only_and_they_then_succeed(
    jobs: list[AnalysisJob], django_capture_on_commit_callbacks: Any
) -> None:
    failed, other_failed, pending = jobs
    for job in (failed, other_failed):
        analysis_job_fail(job_id=job.pk, error="TritonUnavailable: outage")
    out, err = StringIO(), StringIO()
    # The enqueue is the broker seam: what matters is which jobs go, and that each then runs.
    with (
        mock.patch("cds.analysis.services.enqueue", autospec=True) as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        call_command("analysis_jobs", "--requeue-failed", "--json", stdout=out, stderr=err)
    assert sorted(call.args[1] for call in enqueue.call_args_list) == sorted([failed.pk, other_failed.pk])
    assert "requeued 2 failed job(s)" in err.getvalue()
    rows = {row["job"]: row for row in json.loads(out.getvalue())}
    assert rows[failed.pk]["status"] == "pending" and rows[pending.pk]["status"] == "pending"
    failed.refresh_from_db()
    assert failed.attempts == 0 and failed.finished_at is None and "outage" in failed.error

    assert analysis_job_run(failed.pk) == "succeeded"  # the real in-process models
    failed.refresh_from_db()
    assert failed.error == "" and failed.attempts == 1


def test_it_requeues_only_the_named_job_and_never_a_succeeded_one(
    jobs: list[AnalysisJob], django_capture_on_commit_callbacks: Any
) -> None:
    failed, other_failed, succeeded = jobs
    for job in (failed, other_failed):
        analysis_job_fail(job_id=job.pk, error="boom")
    assert analysis_job_run(succeeded.pk) == "succeeded"
    with (
        mock.patch("cds.analysis.services.enqueue", autospec=True) as enqueue,
        django_capture_on_commit_callbacks(execute=True),
    ):
        call_command(
            "analysis_jobs", "--requeue-failed", "--job", str(failed.pk), "--job", str(succeeded.pk), stdout=StringIO()
        )
    assert [call.args[1] for call in enqueue.call_args_list] == [failed.pk]
    other_failed.refresh_from_db()
    succeeded.refresh_from_db()
    assert other_failed.status == "failed" and succeeded.status == "succeeded"
