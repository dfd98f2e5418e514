"""Read what a CDS Hooks card shows: the patient's analysed ECGs and their predictions."""

from __future__ import annotations

from typing import Any

from cds.analysis.models import Prediction
from cds.ecg.models import Patient
from cds.ecg.selectors import patients_matching_ehr_patient
from cds.review.models import Review
from inference.results import DETECTOR_NAME, FOUNDATION_NAME, INTERPRETATION_NAME


def patients_for_hook(
    *, patient_id: str, prefetch_patient: dict[str, Any] | None, organization_id: int
) -> list[Patient]:
    """Return our Patients of ``organization_id`` matching the EHR's patient (prefetched or fetched)."""
    return patients_matching_ehr_patient(
        ehr_patient=prefetch_patient, patient_id=patient_id, organization_id=organization_id
    )


def latest_detector_predictions(*, patients: list[Patient], limit: int = 5) -> list[Prediction]:
    """Return the newest detector prediction of each of the patients' latest analysed ECGs."""
    predictions = (
        Prediction.objects.filter(recording__patient__in=patients, model_name=DETECTOR_NAME)
        .select_related("recording", "job")
        .defer("anomaly_map", "recording__samples")
        .order_by("-recording__effective_at", "-created_at")
    )
    seen: set[int] = set()
    latest = []
    for prediction in predictions[: limit * 3]:
        if prediction.recording_id in seen:
            continue
        seen.add(prediction.recording_id)
        latest.append(prediction)
    return latest[:limit]


def interpretations_by_job(predictions: list[Prediction]) -> dict[int, Prediction]:
    """Return the interpretation of each prediction's job (one query), keyed by job id."""
    rows = Prediction.objects.filter(job_id__in=[p.job_id for p in predictions], model_name=INTERPRETATION_NAME)
    return {row.job_id: row for row in rows.defer("anomaly_map").order_by("created_at")}


def signed_review_for(prediction: Prediction) -> Review | None:
    """Return the review of the prediction's job when a clinician has signed it (with the signed revision)."""
    return (
        Review.objects.filter(job_id=prediction.job_id, signed_revision__isnull=False)
        .select_related("signed_revision", "signed_by")
        .first()
    )


def report_text_for(prediction: Prediction) -> str:
    """Return the report text written for the same job by the report model, if any."""
    report = Prediction.objects.filter(job_id=prediction.job_id, model_name=FOUNDATION_NAME).exclude(report_text="")
    first = report.first()
    return first.report_text if first else ""
