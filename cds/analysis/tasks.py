"""Celery tasks: thin, idempotent wrappers around the analysis services (docs/style.md G5).

The task that runs a job is ``analysis.job_run`` in ``cds/pipeline/tasks.py``: storing its results
touches other apps.
"""

from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings

from cds.analysis.services import analysis_jobs_requeue_stuck

logger = logging.getLogger(__name__)


@shared_task(name="analysis.sweep")  # type: ignore[misc]
def analysis_sweep() -> dict[str, int]:
    """Periodic (beat): recover analysis jobs that were lost or stuck."""
    return analysis_jobs_requeue_stuck(
        pending_after_s=settings.ANALYSIS_SWEEP_PENDING_AFTER_S,
        running_after_s=settings.CELERY_TASK_TIME_LIMIT + 60,
        max_attempts=settings.ANALYSIS_MAX_ATTEMPTS,
    )
