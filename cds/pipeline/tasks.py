"""Celery tasks of the pipeline: thin, idempotent wrappers (docs/style.md G5)."""

from __future__ import annotations

import logging
import time
from typing import Any

from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from cds.analysis.services import analysis_job_fail, analysis_job_release
from cds.core.metrics import ANALYSIS_RETRIES
from inference.errors import InferenceError

logger = logging.getLogger(__name__)


class AnalysisTask(Task):
    """Mark the job failed once Celery gives up on it, so no job is silently dropped."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        analysis_job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")


# No retry count: transient failures are retried for a time budget (ANALYSIS_RETRY_BUDGET_S, from
# the first failure of this run), so a job waits out a Triton outage of an hour however the backoff
# falls, instead of failing after a fixed number of jittered tries.
# log_id: every log line of the run names the job (cds.core.task_context), Celery's own included.
@shared_task(bind=True, base=AnalysisTask, acks_late=True, name="analysis.job_run", max_retries=None, log_id="job_id")  # type: ignore[misc]
def analysis_job_run(self: Task, job_id: int, first_failure_at: float | None = None) -> str | None:
    """Run analysis job ``job_id``; safe to run twice (the claim lets only one through).

    ``first_failure_at`` (epoch seconds) is set by the task's own retries: when the current run of
    transient failures began.
    """
    # The analysis stack (inference, scipy, neurokit2) loads in the worker only; the web process
    # imports this module (to enqueue by name) and never runs the body.
    from cds.pipeline.analysis import analysis_job_execute  # noqa: PLC0415 worker-only analysis stack

    try:
        job = analysis_job_execute(job_id=job_id)
    except InferenceError as exc:
        if not exc.retry_later:  # the service fails the job on a permanent error and returns
            logger.error("analysis job %s crashed", job_id, exc_info=True)
            raise
        # Triton down, slow, or still loading its models: the service has already put the job
        # back to pending, so the retried task can claim it again (the error's flag decides, E4).
        raise _retry(self, job_id, first_failure_at, exc) from exc
    except SoftTimeLimitExceeded as exc:
        # A stalled call (Triton hung past its deadline, a slow database): transient. Put the
        # job back before retrying; the hard limit (CELERY_TASK_TIME_LIMIT) is the sweep's case.
        analysis_job_release(
            job_id=job_id, error=f"SoftTimeLimitExceeded after {settings.CELERY_TASK_SOFT_TIME_LIMIT} s"
        )
        raise _retry(self, job_id, first_failure_at, exc) from exc
    except Exception:
        # Worker boundary: log with the traceback and re-raise so on_failure records the reason.
        logger.error("analysis job %s crashed", job_id, exc_info=True)
        raise
    return job.status if job else None


def _retry(task: Task, job_id: int, first_failure_at: float | None, exc: BaseException) -> BaseException:
    """Return the retry to raise (or ``exc`` itself once the time budget is spent: the job then fails).

    The backoff is the one Celery's autoretry would use: 5 s doubling, capped at
    ``ANALYSIS_RETRY_BACKOFF_MAX_S``, full jitter; the cap stays far below RabbitMQ's consumer
    timeout, which a worker holding a delayed message must not exceed.
    """
    now = time.time()
    since = first_failure_at if first_failure_at is not None else now
    waited = now - since
    if waited >= settings.ANALYSIS_RETRY_BUDGET_S:
        logger.error("analysis job %s: %s for %.0f s; retry budget spent", job_id, type(exc).__name__, waited)
        return exc
    countdown = get_exponential_backoff_interval(
        factor=5, retries=task.request.retries, maximum=settings.ANALYSIS_RETRY_BACKOFF_MAX_S, full_jitter=True
    )
    ANALYSIS_RETRIES.labels(type(exc).__name__).inc()
    logger.warning(
        "analysis job %s: %s; retry in %d s (failing for %.0f s)", job_id, type(exc).__name__, countdown, waited
    )
    retry: BaseException = task.retry(
        args=[job_id], kwargs={"first_failure_at": since}, exc=exc, countdown=countdown, throw=False
    )
    return retry


# Bounded: a candidate's evidence is worth a few tries, not an outage's worth of queued retries
# (the served job has its own budget). Backoff 10 s, 20 s, 40 s, ...; then the run stays "failed".
SHADOW_MAX_ATTEMPTS = 4


@shared_task(bind=True, acks_late=True, name="shadow.run", max_retries=SHADOW_MAX_ATTEMPTS - 1, log_id="job_id")  # type: ignore[misc]
def shadow_run(self: Task, job_id: int, candidate_id: int) -> str:
    """Run shadow candidate ``candidate_id`` on job ``job_id``'s ECG; safe to run twice (stored once)."""
    from cds.pipeline.shadow import shadow_run_crashed, shadow_run_execute  # noqa: PLC0415 worker-only analysis stack

    attempt = self.request.retries + 1
    try:
        return shadow_run_execute(
            job_id=job_id, candidate_id=candidate_id, attempt=attempt, max_attempts=SHADOW_MAX_ATTEMPTS
        )
    except InferenceError as exc:  # transient, attempts left: the service recorded "retrying"
        countdown = get_exponential_backoff_interval(factor=10, retries=self.request.retries, maximum=300)
        raise self.retry(exc=exc, countdown=countdown) from exc
    except Exception as exc:
        # Worker boundary: visible on the job and in the log, then Celery records the failure.
        shadow_run_crashed(job_id=job_id, candidate_id=candidate_id, error=f"{type(exc).__name__}: {exc}")
        logger.error("shadow run of job %s for candidate %s crashed", job_id, candidate_id, exc_info=True)
        raise
