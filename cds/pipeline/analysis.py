"""Analysis use case: run a job and store its results everywhere they go (docs/style.md E1).

Results go to the analysis app (predictions, FHIR result resources), the review worklist and the
EHR write-back outbox, in one transaction; this module is the one place that knows all four.
"""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cds.analysis.analyzer import analyzer, ecg_input_for
from cds.analysis.fhir_results import result_entries, transaction_bundle
from cds.analysis.models import AnalysisJob, Prediction
from cds.analysis.results import local_references, predictions_create, remote_references, result_resources_store
from cds.analysis.services import analysis_job_claim, analysis_job_fail, analysis_job_release, analysis_job_succeed
from cds.fhir.dates import fhir_instant
from cds.pipeline.retraction import ecg_is_retracted
from cds.pipeline.shadow import shadow_runs_enqueue
from cds.review.recalibration import recalibrated_result
from cds.review.services import review_create_for_results
from cds.writeback.services import outbox_enqueue
from inference.analysis_result import AnalysisResult
from inference.errors import InferenceError

logger = logging.getLogger(__name__)


def analysis_job_execute(*, job_id: int) -> AnalysisJob | None:
    """Run one job: claim it, analyse its ECG, store the results and mark it done.

    1. Claim (conditional UPDATE): returns None when the job is gone, done, or another worker has it.
    2. Analyse outside any transaction (docs/style.md G7: never hold one across a Triton call).
    3. Store predictions, result resources and the write-back outbox row and mark the job
       succeeded, all in one transaction, so a crash leaves either everything or nothing. Once it
       commits, each candidate in shadow is enqueued on its own queue (``cds.pipeline.shadow``).
    A transient inference error (Triton down or slow), or a model Triton reports missing (it does so
    while it (re)loads its repository after a restart), puts the job back to pending and re-raises it
    for the task's retries, after which the job fails with that reason; a permanent one (model missing, ECG not scorable) fails the job with
    the reason and returns it.
    """
    job = analysis_job_claim(job_id=job_id)
    if job is None:
        logger.info("analysis job %s not claimable; skipping", job_id)
        return None
    started = time.perf_counter()
    ecg = ecg_input_for(job.recording)
    load_ms = round((time.perf_counter() - started) * 1000, 3)
    try:
        result = analyzer().analyse(ecg)
    except InferenceError as exc:
        if exc.retry_later:
            analysis_job_release(job_id=job.pk, error=f"{type(exc).__name__}: {exc.message}")
            raise
        analysis_job_fail(job_id=job.pk, error=f"{type(exc).__name__}: {exc.message}")
        job.refresh_from_db()
        return job
    with transaction.atomic():
        started = time.perf_counter()
        if analysis_results_store(job=job, result=result):
            shadow_runs_enqueue(job_id=job.pk)  # on commit: candidates run after the served verdict is stored
        store_ms = round((time.perf_counter() - started) * 1000, 3)
        analysis_job_succeed(
            job_id=job.pk,
            timings={"load_ms": load_ms, **result.timings_ms, "store_ms": store_ms},
            detector=result.detector,
        )
    job.refresh_from_db()
    return job


@transaction.atomic
def analysis_results_store(*, job: AnalysisJob, result: AnalysisResult) -> list[Prediction]:
    """Store predictions and result resources and queue the EHR write-back, all in one transaction.

    Idempotent per job: a job that already has predictions is left as it is (a redelivered task).
    """
    if Prediction.objects.filter(job=job).exists():
        return list(Prediction.objects.filter(job=job))
    if ecg_is_retracted(job.recording):
        return []  # retracted while the worker ran: nothing to show, nothing to send the EHR
    # Issue 19: the site's approved recalibration restates the probability (never the flag) in every copy.
    result = recalibrated_result(result, job.recording)
    predictions = predictions_create(job=job, result=result)
    review_create_for_results(job=job, predictions=predictions, result=result)  # issue 6: review worklist
    issued = fhir_instant(timezone.now())
    job_key = f"job-{job.writeback_uuid}"  # stored UUID: survives a restore, unique across installations
    ecg, patient = local_references(job.recording)
    result_resources_store(
        job=job, entries=result_entries(result, job_key=job_key, ecg=ecg, patient=patient, issued=issued)
    )
    if getattr(settings, "WRITEBACK_ENABLED", False):
        ecg, patient = remote_references(job.recording)
        bundle = transaction_bundle(result_entries(result, job_key=job_key, ecg=ecg, patient=patient, issued=issued))
        outbox_enqueue(key=f"analysis-job:{job.pk}", bundle=bundle, ordering_key=f"ecg:{job.recording_id}")
    return predictions
