"""Celery tasks of the pipeline: thin, idempotent wrappers (docs/style.md G5)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from celery.utils.time import get_exponential_backoff_interval
from django.conf import settings

from cds.analysis.services import analysis_job_fail
from inference.errors import InferenceError

logger = logging.getLogger(__name__)


class AnalysisTask(Task):
    """Mark the job failed once Celery gives up on it, so no job is silently dropped."""

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        job_id = args[0] if args else kwargs.get("job_id")
        analysis_job_fail(job_id=job_id, error=f"{type(exc).__name__}: {exc}")


@shared_task(
    bind=True,
    base=AnalysisTask,
    acks_late=True,
    name="analysis.job_run",
    max_retries=settings.ANALYSIS_MAX_RETRIES,
)  # type: ignore[misc]
def analysis_job_run(self: Task, job_id: int) -> str | None:
    """Run analysis job ``job_id``; safe to run twice (the claim lets only one through)."""
    # The analysis stack (inference, scipy, neurokit2) loads in the worker only; the web process
    # imports this module (to enqueue by name) and never runs the body.
    from cds.pipeline.analysis import analysis_job_execute  # noqa: PLC0415 worker-only analysis stack

    try:
        job = analysis_job_execute(job_id=job_id)
    except InferenceError as exc:
        if not exc.retry_later:  # the service fails the job on a permanent error and returns
            logger.error("analysis job %s crashed", job_id, exc_info=True)
            raise
        # Triton down, slow, or still loading its models: the service has already put the job back
        # to pending, so the retried task can claim it again. The error's flag decides (E4); the
        # backoff is the one Celery's autoretry would use (5 s doubling, capped, full jitter).
        logger.warning("analysis job %s: %s; will retry", job_id, type(exc).__name__)
        countdown = get_exponential_backoff_interval(
            factor=5, retries=self.request.retries, maximum=settings.ANALYSIS_RETRY_BACKOFF_MAX_S, full_jitter=True
        )
        raise self.retry(exc=exc, countdown=countdown) from exc
    except Exception:
        # Worker boundary: log with the traceback and re-raise so on_failure records the reason.
        logger.error("analysis job %s crashed", job_id, exc_info=True)
        raise
    return job.status if job else None
