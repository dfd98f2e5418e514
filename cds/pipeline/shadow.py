"""Shadow candidates (issue 19): each candidate in shadow runs on every analysed ECG, never shown.

The served analysis commits first (``analysis_job_execute``); on that commit one ``shadow.run`` task
per candidate goes to the ``shadow`` queue (its own workers, so a candidate never takes an analysis
slot). The run asks Triton for the candidate's versions, and stores its Predictions under
``shadow:<model_name>`` on the same job, and nothing else: no FHIR result resource, no review, no
write-back outbox row, so no CDS card either (every reader of the served verdict selects the exact
model name). How the run went is kept on the job (``AnalysisJob.shadow``) and counted
(``cds_shadow_runs_total``); a failure there never touches the served job.
"""

from __future__ import annotations

import functools
import logging
import time

from django.db import transaction

from cds.analysis.analyzer import ecg_input_for, shadow_analyzer
from cds.analysis.models import AnalysisJob, Prediction
from cds.analysis.results import prediction_rows
from cds.analysis.services import analysis_job_shadow_record
from cds.core.dispatch import enqueue
from cds.core.metrics import SHADOW_RUNS
from cds.pipeline.retraction import ecg_is_retracted
from cds.review.models import ModelCandidate
from cds.review.quality import shadow_model_name
from cds.review.selectors import shadow_candidates
from inference.analysis_result import AnalysisResult
from inference.errors import InferenceError
from inference.results import INTERPRETATION_NAME

logger = logging.getLogger(__name__)

# The Celery task of one shadow run (cds/pipeline/tasks.py); routed to CELERY_SHADOW_QUEUE.
SHADOW_RUN_TASK = "shadow.run"


def shadow_runs_enqueue(*, job_id: int) -> int:
    """Enqueue, once the current transaction commits, one shadow run of job ``job_id`` per candidate.

    Called inside the served results' transaction, so a run never starts before (or without) the
    served verdict it is compared with. Returns how many runs were scheduled.
    """
    candidate_ids = list(shadow_candidates().values_list("pk", flat=True))
    for candidate_id in candidate_ids:
        transaction.on_commit(functools.partial(_enqueue, job_id, candidate_id))
    return len(candidate_ids)


def _enqueue(job_id: int, candidate_id: int) -> None:
    try:
        enqueue(SHADOW_RUN_TASK, job_id, candidate_id)
    except Exception:
        # The served job has committed and its task must still finish cleanly: a broker error here
        # costs the candidate one ECG of evidence, never the served verdict. Logged and counted.
        SHADOW_RUNS.labels("not_enqueued", "broker").inc()
        logger.error("shadow run of job %s for candidate %s not enqueued", job_id, candidate_id, exc_info=True)


def shadow_run_execute(*, job_id: int, candidate_id: int, attempt: int = 1, max_attempts: int = 1) -> str:
    """Run candidate ``candidate_id`` on job ``job_id``'s ECG and store its Predictions; return the outcome.

    1. Skip (return "skipped") when the job has not succeeded, the candidate is no longer in
       shadow, the ECG was retracted, or this run is already stored (a redelivered task).
    2. Analyse with the candidate's Triton versions, outside any transaction (docs/style.md G7).
    3. Store its Predictions, renamed ``shadow:<model_name>`` (the interpretation's carries the
       candidate's version), and the run's entry on the job, in one transaction.
    An InferenceError is recorded on the job and counted; one that may pass (``retry_later``) is
    re-raised while ``attempt < max_attempts`` for the task to retry, otherwise "failed" is returned.
    """
    job = AnalysisJob.objects.select_related("recording").filter(pk=job_id).first()
    candidate = ModelCandidate.objects.filter(pk=candidate_id).first()
    if job is None or candidate is None or job.status != AnalysisJob.Status.SUCCEEDED:
        return "skipped"
    if candidate.status != ModelCandidate.Status.SHADOW or ecg_is_retracted(job.recording):
        return "skipped"
    if _stored(job, candidate):
        return "skipped"
    started = time.perf_counter()
    try:
        analyzer = shadow_analyzer(
            detector_version=candidate.detector_version, foundation_version=candidate.foundation_version
        )
        result = analyzer.analyse(ecg_input_for(job.recording))
    except InferenceError as exc:
        again = exc.retry_later and attempt < max_attempts
        outcome = "retrying" if again else "failed"
        error = f"{type(exc).__name__}: {exc.message}"
        analysis_job_shadow_record(
            job_id=job.pk,
            version=candidate.model_version,
            entry={"status": outcome, "attempts": attempt, "error": error[:1000]},
        )
        SHADOW_RUNS.labels(outcome, type(exc).__name__).inc()
        logger.warning(
            "shadow %s on job %s: %s (attempt %d of %d)", candidate.model_version, job.pk, error, attempt, max_attempts
        )
        if again:
            raise
        return outcome
    ms = round((time.perf_counter() - started) * 1000, 3)
    _store(job=job, candidate=candidate, result=result, entry={"status": "succeeded", "attempts": attempt, "ms": ms})
    SHADOW_RUNS.labels("succeeded", "").inc()
    return "succeeded"


def shadow_run_crashed(*, job_id: int, candidate_id: int, error: str) -> None:
    """Record on the job that a shadow run crashed (an unexpected error), so it is visible there."""
    candidate = ModelCandidate.objects.filter(pk=candidate_id).first()
    if candidate is not None:
        entry = {"status": "failed", "error": error[:1000]}
        analysis_job_shadow_record(job_id=job_id, version=candidate.model_version, entry=entry)
    SHADOW_RUNS.labels("failed", "crash").inc()


def _stored(job: AnalysisJob, candidate: ModelCandidate) -> bool:
    return Prediction.objects.filter(
        job=job, model_name=shadow_model_name(candidate.model_name), model_version=candidate.model_version
    ).exists()


@transaction.atomic
def _store(*, job: AnalysisJob, candidate: ModelCandidate, result: AnalysisResult, entry: dict[str, object]) -> None:
    """Store the candidate's Predictions (and nothing else) and the run's entry on the job."""
    # The job's row lock (taken by analysis_job_shadow_record) serialises two deliveries of one run:
    # the second sees the first's rows and stores nothing.
    analysis_job_shadow_record(job_id=job.pk, version=candidate.model_version, entry=entry)
    if _stored(job, candidate):
        return
    rows = prediction_rows(job=job, result=result)
    for row in rows:
        if row.model_name == INTERPRETATION_NAME:
            # The candidate's label: the report and promote_model find its verdicts by it.
            row.input_provenance["interpretation_version"] = row.model_version
            row.model_version = candidate.model_version
        row.model_name = shadow_model_name(row.model_name)
    Prediction.objects.bulk_create(rows)
