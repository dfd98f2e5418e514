"""Build CDS Hooks 2.0 cards (https://cds-hooks.hl7.org/2.0/) from stored predictions."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.urls import reverse

from cds.analysis.models import Prediction
from cds.hooks.selectors import latest_detector_predictions, patients_for_hook, report_text_for

SERVICE_ID = "ecg-ai-findings"
SOURCE = {"label": "ecg-cds AI ECG analysis (decision support, preliminary)"}


def discovery() -> dict[str, Any]:
    """Return the CDS Hooks discovery document."""
    return {
        "services": [
            {
                "hook": "patient-view",
                "id": SERVICE_ID,
                "title": "AI findings on resting ECGs",
                "description": (
                    "Shows the anomaly detector's result and the draft report for the patient's recently analysed "
                    "ECGs, with a link to the clinician review page. Results are computed on ingest, so the hook "
                    "only reads them."
                ),
                "prefetch": {"patient": "Patient/{{context.patientId}}"},
            }
        ]
    }


def _review_path(prediction: Prediction) -> str:
    """Return the clinician review page of the prediction's ECG, or its worklist when it has none."""
    from cds.review.models import Review

    review = Review.objects.filter(job_id=prediction.job_id).only("pk", "queue").first()
    if review is None:
        return reverse("admin:review_review_changelist")
    name = "review_review" if review.queue == Review.Queue.FLAGGED else "review_reannotationreview"
    return reverse(f"admin:{name}_change", args=[review.pk])


def _card(prediction: Prediction) -> dict[str, Any]:
    recording = prediction.recording
    when = recording.effective_at.date().isoformat() if recording.effective_at else "undated"
    score, threshold = prediction.score or 0.0, prediction.threshold or 0.0
    verdict = "AI flagged a possible anomaly" if prediction.flagged else "no anomaly flagged by AI"
    intervals = ", ".join(
        f"{i['lead']} {i['start_ms'] / 1000:.1f}–{i['end_ms'] / 1000:.1f} s" for i in prediction.intervals[:6]
    )
    detail = [
        f"**Anomaly score** {score:.2f} (operating point {threshold:.2f}); model {prediction.model_name} "
        f"{prediction.model_version}.",
    ]
    if intervals:
        detail.append(f"**Where**: {intervals}.")
    report = report_text_for(prediction)
    if report:
        detail.append(f"**Draft report**: {report}")
    detail.append("_Preliminary AI decision support: not a diagnosis until a clinician signs._")
    review_url = settings.PUBLIC_BASE_URL + _review_path(prediction)
    return {
        "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{SERVICE_ID}/{prediction.pk}")),
        "summary": f"ECG {when}: {verdict}"[:140],
        "indicator": "warning" if prediction.flagged else "info",
        "detail": "\n\n".join(detail),
        "source": SOURCE,
        "links": [{"label": "Open the ECG review page", "url": review_url, "type": "absolute"}],
    }


def patient_view_cards(*, request: dict[str, Any]) -> dict[str, Any]:
    """Return the cards for a ``patient-view`` request (flagged ECGs first)."""
    context = request.get("context") or {}
    prefetch = request.get("prefetch") or {}
    patients = patients_for_hook(patient_id=str(context.get("patientId", "")), prefetch_patient=prefetch.get("patient"))
    predictions = latest_detector_predictions(patients=patients)
    predictions.sort(key=lambda p: not p.flagged)
    return {"cards": [_card(p) for p in predictions]}
