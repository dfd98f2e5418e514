"""Analysis job state transitions (the only place that changes ``AnalysisJob.status``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from cds.analysis.models import AnalysisJob
from cds.core.dispatch import enqueue
from cds.core.metrics import ANALYSIS_JOBS_FINISHED, ANALYSIS_STAGE_SECONDS
from cds.ecg.models import EcgRecording
from inference.results import DetectorResult

# The Celery task that runs a job (cds/pipeline/tasks.py); enqueued by name (cds.core.dispatch).
ANALYSIS_JOB_RUN_TASK = "analysis.job_run"

logger = logging.getLogger(__name__)


def analysis_job_create(*, recording: EcgRecording) -> AnalysisJob:
    """Create a pending job for an ECG and enqueue it once the surrounding transaction commits."""
    job = AnalysisJob(recording=recording)
    job.full_clean(exclude=["recording"])
    job.save()
    # After commit: a worker must never pick up a job whose ECG rows are not yet visible, and a
    # rolled-back ingest must not leave a queued message behind. Robust: once the ECG is committed
    # the client must hear 201, not a 500 "not applied" it would retry into a duplicate; a publish
    # lost here (broker down) is logged and recovered from the database by the sweep
    # (analysis_jobs_requeue_stuck re-enqueues pending jobs older than ANALYSIS_SWEEP_PENDING_AFTER_S).
    transaction.on_commit(lambda: enqueue(ANALYSIS_JOB_RUN_TASK, job.pk), robust=True)
    return job


def analysis_jobs_cancel(*, recording_id: int) -> int:
    """Cancel an ECG's jobs no worker has claimed yet (pending → cancelled); return how many.

    A running job is left to finish: its results are then stored already retracted (see
    ``cds.pipeline.retraction``), since the worker cannot be interrupted mid-inference.
    """
    return AnalysisJob.objects.filter(recording_id=recording_id, status=AnalysisJob.Status.PENDING).update(
        status=AnalysisJob.Status.CANCELLED, finished_at=timezone.now(), updated_at=timezone.now()
    )


def analysis_job_claim(*, job_id: int) -> AnalysisJob | None:
    """Move a pending job to running; return None when it is gone or another worker has it.

    A conditional UPDATE makes the claim atomic without holding a lock across the analysis.
    """
    claimed = AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.PENDING).update(
        status=AnalysisJob.Status.RUNNING, started_at=timezone.now(), updated_at=timezone.now()
    )
    if claimed != 1:
        return None
    job = AnalysisJob.objects.select_related("recording").get(pk=job_id)
    AnalysisJob.objects.filter(pk=job_id).update(attempts=job.attempts + 1)
    return job


def analysis_job_succeed(*, job_id: int, timings: dict[str, float], detector: DetectorResult) -> None:
    """Mark a running job succeeded with its timings and the detector's model versions."""
    updated = AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.RUNNING).update(
        status=AnalysisJob.Status.SUCCEEDED,
        finished_at=timezone.now(),
        updated_at=timezone.now(),
        timings=timings,
        model_name=detector.model_name,
        model_version=detector.model_version,
        triton_model_version=detector.server_model_version,
        error="",
    )
    if updated:
        transaction.on_commit(lambda: _count_finished(AnalysisJob.Status.SUCCEEDED, timings))


def analysis_job_release(*, job_id: int, error: str) -> None:
    """Put a running job back to pending after a transient failure, keeping the reason visible."""
    AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.RUNNING).update(
        status=AnalysisJob.Status.PENDING, error=error[:4000], updated_at=timezone.now()
    )


@transaction.atomic
def analysis_job_shadow_record(*, job_id: int, version: str, entry: dict[str, Any]) -> None:
    """Record how candidate ``version``'s shadow run on job ``job_id`` went (``AnalysisJob.shadow``).

    Row lock: several candidates' runs of one job may finish at once, and each rewrites the whole
    JSON value; the lock makes their read-modify-write calls take turns. The served job is finished,
    so nothing on the served path waits on it.
    """
    job = AnalysisJob.objects.select_for_update().filter(pk=job_id).first()
    if job is None:
        return
    job.shadow = {**job.shadow, version: entry}
    job.save(update_fields=["shadow", "updated_at"])


def analysis_job_fail(*, job_id: int, error: str) -> None:
    """Mark a job failed with its reason (called after the last retry)."""
    updated = (
        AnalysisJob.objects.filter(pk=job_id)
        .exclude(status__in=[AnalysisJob.Status.SUCCEEDED, AnalysisJob.Status.CANCELLED])
        .update(
            status=AnalysisJob.Status.FAILED, error=error[:4000], finished_at=timezone.now(), updated_at=timezone.now()
        )
    )
    if updated:
        transaction.on_commit(lambda: _count_finished(AnalysisJob.Status.FAILED, {}))


def _count_finished(status: str, timings: dict[str, float]) -> None:
    """Metrics of a finished job (after commit: a rolled-back transition is not counted)."""
    ANALYSIS_JOBS_FINISHED.labels(status).inc()
    for stage, milliseconds in timings.items():
        ANALYSIS_STAGE_SECONDS.labels(stage.removesuffix("_ms")).observe(milliseconds / 1000)


def analysis_jobs_requeue_stuck(*, pending_after_s: int, running_after_s: int, max_attempts: int) -> dict[str, int]:
    """Re-enqueue jobs whose message was lost and recover jobs whose worker died mid-run.

    1. Pending jobs older than ``pending_after_s`` are enqueued again (the claim makes a duplicate
       message harmless).
    2. Running jobs started more than ``running_after_s`` ago (beyond the task's hard time limit)
       go back to pending and are enqueued, or fail once they used ``max_attempts``.
    Returns counts per action.
    """
    now = timezone.now()
    counts = {"requeued_pending": 0, "recovered_running": 0, "failed": 0}
    stale_pending = AnalysisJob.objects.filter(
        status=AnalysisJob.Status.PENDING, updated_at__lt=now - timedelta(seconds=pending_after_s)
    ).values_list("pk", flat=True)
    for job_id in list(stale_pending[:500]):
        AnalysisJob.objects.filter(pk=job_id).update(updated_at=now)
        enqueue(ANALYSIS_JOB_RUN_TASK, job_id)
        counts["requeued_pending"] += 1
    stuck = AnalysisJob.objects.filter(
        status=AnalysisJob.Status.RUNNING, started_at__lt=now - timedelta(seconds=running_after_s)
    )
    for job in list(stuck[:500]):
        if job.attempts >= max_attempts:
            analysis_job_fail(job_id=job.pk, error=f"worker lost the job {job.attempts} times; giving up")
            counts["failed"] += 1
            continue
        # Conditional: only the sweep that still sees it running resets it.
        if AnalysisJob.objects.filter(pk=job.pk, status=AnalysisJob.Status.RUNNING, started_at=job.started_at).update(
            status=AnalysisJob.Status.PENDING, updated_at=now
        ):
            enqueue(ANALYSIS_JOB_RUN_TASK, job.pk)
            counts["recovered_running"] += 1
    if any(counts.values()):
        logger.warning("analysis sweep: %s", counts)
    return counts


def analysis_jobs_requeue_failed(*, job_ids: list[int] | None = None, limit: int = 1000) -> list[int]:
    """Put failed jobs (all, or those of ``job_ids``) back to pending and enqueue them; return their ids.

    For after an outage or a fix (``manage.py analysis_jobs --requeue-failed``): each job starts
    over with a fresh attempt count and retry budget; its last error stays visible until it runs.
    Enqueued after commit, oldest first, at most ``limit``.
    """
    failed = AnalysisJob.objects.filter(status=AnalysisJob.Status.FAILED)
    if job_ids is not None:
        failed = failed.filter(pk__in=job_ids)
    requeued = []
    with transaction.atomic():
        for job_id in list(failed.order_by("created_at").values_list("pk", flat=True)[:limit]):
            # Conditional: a job another operator requeued meanwhile is not enqueued twice.
            if AnalysisJob.objects.filter(pk=job_id, status=AnalysisJob.Status.FAILED).update(
                status=AnalysisJob.Status.PENDING, attempts=0, finished_at=None, updated_at=timezone.now()
            ):
                requeued.append(job_id)
        transaction.on_commit(lambda: _enqueue_all(requeued))
    if requeued:
        logger.warning("requeued %d failed analysis job(s)", len(requeued))
    return requeued


def _enqueue_all(job_ids: list[int]) -> None:
    for job_id in job_ids:
        enqueue(ANALYSIS_JOB_RUN_TASK, job_id)
