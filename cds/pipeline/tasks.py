"""Celery tasks of the pipeline: thin, idempotent wrappers (docs/style.md G5)."""

from __future__ import annotations

import logging
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from cds.analysis.services import analysis_job_fail
from inference.errors import ModelNotFound, TritonUnavailable

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
    # Only Triton being down, slow, or still loading its models is worth waiting for; the service
    # has already put the job back to pending, so the retried task can claim it again.
    autoretry_for=(TritonUnavailable, ModelNotFound),
    retry_backoff=5,
    retry_backoff_max=settings.ANALYSIS_RETRY_BACKOFF_MAX_S,
    retry_jitter=True,
    max_retries=settings.ANALYSIS_MAX_RETRIES,
)  # type: ignore[misc]
def analysis_job_run(self: Task, job_id: int) -> str | None:
    """Run analysis job ``job_id``; safe to run twice (the claim lets only one through)."""
    # The analysis stack (inference, scipy, neurokit2) loads in the worker only; the web process
    # imports this module (to enqueue by name) and never runs the body.
    from cds.pipeline.analysis import analysis_job_execute  # noqa: PLC0415 worker-only analysis stack

    try:
        job = analysis_job_execute(job_id=job_id)
    except (TritonUnavailable, ModelNotFound) as exc:
        logger.warning("analysis job %s: %s; will retry", job_id, type(exc).__name__)
        raise
    except Exception:
        # Worker boundary: log with the traceback and re-raise so on_failure records the reason.
        logger.error("analysis job %s crashed", job_id, exc_info=True)
        raise
    return job.status if job else None
