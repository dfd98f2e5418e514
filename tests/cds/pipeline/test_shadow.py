"""Issue 19: shadow candidates around the served path (enqueue on commit, failures, retries, registration).

The served job runs in process here (the test default); a shadow run's Triton is tests/e2e/test_shadow.py's.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.core.management import CommandError, call_command
from prometheus_client import REGISTRY

from cds.analysis.analyzer import analyzer
from cds.analysis.models import AnalysisJob, Prediction
from cds.pipeline import shadow
from cds.pipeline.tasks import SHADOW_MAX_ATTEMPTS, analysis_job_run, shadow_run
from cds.review.models import ModelCandidate
from cds.review.promotion import register_candidate
from cds.review.selectors import shadow_candidates
from inference.results import INTERPRETATION_NAME

pytestmark = pytest.mark.django_db
CRITERIA = [{"figure": "sensitivity", "bound": "ci_low", "compare": "serving"}]


def _candidate(version: str, **versions: str) -> ModelCandidate:
    return register_candidate(
        model_name=INTERPRETATION_NAME, model_version=version, criteria=CRITERIA, min_signed=1, **versions
    )


@pytest.fixture
def posted(service_account: Any, ecg_factory: Any) -> AnalysisJob:
    response = service_account.post("/fhir/Observation", ecg_factory(9))
    assert response.status_code == 201
    return AnalysisJob.objects.get(recording__logical_id=response.json()["id"])


def _run_served(job: AnalysisJob, capture: Any) -> list[functools.partial[None]]:
    """Run the served job; return the shadow enqueue callbacks it registered for its commit."""
    with capture(execute=False) as callbacks:
        assert analysis_job_run(job.pk) == "succeeded"
    return [cb for cb in callbacks if isinstance(cb, functools.partial) and cb.func is shadow._enqueue]  # noqa: SLF001


def test_it_enqueues_one_run_per_candidate_in_shadow_on_the_served_commit(
    posted: AnalysisJob, django_capture_on_commit_callbacks: Any
) -> None:
    running = _candidate("interp-2", detector_version="2")
    _candidate("interp-3")  # registered without versions: nothing to run
    _candidate("interp-4", foundation_version="2")
    ModelCandidate.objects.filter(model_version="interp-4").update(status=ModelCandidate.Status.RETIRED)

    callbacks = _run_served(posted, django_capture_on_commit_callbacks)

    with mock.patch("cds.pipeline.shadow.enqueue", autospec=True) as enqueue:
        for callback in callbacks:
            callback()
    enqueue.assert_called_once_with("shadow.run", posted.pk, running.pk)


def test_a_broker_error_at_enqueue_never_fails_the_served_job(
    posted: AnalysisJob, django_capture_on_commit_callbacks: Any
) -> None:
    _candidate("interp-2", detector_version="2")
    labels = {"outcome": "not_enqueued", "reason": "broker"}
    before = REGISTRY.get_sample_value("cds_shadow_runs_total", labels) or 0.0
    callbacks = _run_served(posted, django_capture_on_commit_callbacks)

    with mock.patch("cds.pipeline.shadow.enqueue", autospec=True, side_effect=ConnectionError("broker down")):
        callbacks[0]()  # logged and counted, not raised into the served task

    assert REGISTRY.get_sample_value("cds_shadow_runs_total", labels) == before + 1
    posted.refresh_from_db()
    assert posted.status == AnalysisJob.Status.SUCCEEDED


def test_the_in_process_backend_does_not_run_candidates_and_says_so(
    posted: AnalysisJob, django_capture_on_commit_callbacks: Any
) -> None:
    candidate = _candidate("interp-2", detector_version="2")
    _run_served(posted, django_capture_on_commit_callbacks)

    assert shadow_run(posted.pk, candidate.pk) == "failed"

    posted.refresh_from_db()
    assert posted.status == AnalysisJob.Status.SUCCEEDED
    assert "Triton only" in posted.shadow["interp-2"]["error"]
    assert not Prediction.objects.filter(job=posted, model_name__startswith="shadow:").exists()


def test_an_unreachable_triton_is_retried_a_bounded_number_of_times(
    posted: AnalysisJob, django_capture_on_commit_callbacks: Any, settings: Any
) -> None:
    from inference.local_triton import free_port

    candidate = _candidate("interp-2", detector_version="2")
    _run_served(posted, django_capture_on_commit_callbacks)
    served = list(Prediction.objects.filter(job=posted).values_list("pk", flat=True))
    # A real client against a port nobody listens on: connection refused, a transient error.
    settings.INFERENCE_BACKEND = "triton"
    settings.TRITON_URL = f"127.0.0.1:{free_port()}"
    settings.TRITON_HTTP_URL = ""
    settings.TRITON_TIMEOUT_S = 1.0
    analyzer.cache_clear()
    try:
        result = shadow_run.apply(args=[posted.pk, candidate.pk])  # eager: the retries run at once
    finally:
        analyzer.cache_clear()

    assert result.get() == "failed"  # the last attempt records the failure and ends the task
    posted.refresh_from_db()
    entry = posted.shadow["interp-2"]
    assert entry["status"] == "failed" and entry["attempts"] == SHADOW_MAX_ATTEMPTS
    assert "TritonUnavailable" in entry["error"]
    assert posted.status == AnalysisJob.Status.SUCCEEDED and posted.error == ""
    assert list(Prediction.objects.filter(job=posted).values_list("pk", flat=True)) == served


def test_a_run_for_a_retired_candidate_or_an_unfinished_job_does_nothing(posted: AnalysisJob) -> None:
    candidate = _candidate("interp-2", detector_version="2")
    assert shadow_run(posted.pk, candidate.pk) == "skipped"  # the served job has not run yet
    ModelCandidate.objects.filter(pk=candidate.pk).update(status=ModelCandidate.Status.RETIRED)
    AnalysisJob.objects.filter(pk=posted.pk).update(status=AnalysisJob.Status.SUCCEEDED)
    assert shadow_run(posted.pk, candidate.pk) == "skipped"
    assert shadow_run(999_999, candidate.pk) == "skipped"
    posted.refresh_from_db()
    assert posted.shadow == {}


def test_the_command_puts_a_candidate_in_shadow_and_retires_it(tmp_path: Path) -> None:
    criteria = tmp_path / "criteria.json"
    criteria.write_text(json.dumps(CRITERIA))

    call_command("register_model_candidate", "interp-2", "--criteria", str(criteria), "--detector-version", "2")

    candidate = ModelCandidate.objects.get(model_version="interp-2")
    assert candidate.status == ModelCandidate.Status.SHADOW
    assert (candidate.detector_version, candidate.foundation_version) == ("2", "")
    assert list(shadow_candidates()) == [candidate]
    with pytest.raises(CommandError, match="detector_version must be a Triton version number"):
        call_command("register_model_candidate", "interp-3", "--criteria", str(criteria), "--detector-version", "v2")
    with pytest.raises(CommandError, match="only ecg-interpretation candidates run in shadow"):
        call_command(
            "register_model_candidate", "d-2", "--name", "ecg-anomaly-detector", "--criteria", str(criteria),
            "--detector-version", "2",
        )  # fmt: skip
    assert ModelCandidate.objects.count() == 1

    call_command("register_model_candidate", "interp-2", "--retire")

    candidate.refresh_from_db()
    assert candidate.status == ModelCandidate.Status.RETIRED and not shadow_candidates().exists()
