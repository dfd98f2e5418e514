"""Generated served verdicts with signed reviews, written straight to the real PostgreSQL (issue 19).

The quality report reads only stored rows, so these skip ingest and inference: each ECG gets an
EcgRecording, a job, the served (interpretation) prediction and, when ``verdict`` is given, a signed
review of that call.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np
from django.utils import timezone

from cds.analysis.models import AnalysisJob, Prediction
from cds.core.models import Organization
from cds.ecg.models import EcgRecording
from cds.fhir.models import StoredResource
from cds.review.models import Review, ReviewRevision
from inference.results import INTERPRETATION_NAME

LEADS = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def served_ecg(
    *,
    org: str = "st-marys",
    source: str = "ward-a",
    score: float | None,
    flagged: bool,
    verdict: str | None = None,
    version: str = "interp-1",
    age: float | None = 60.0,
    sex: str = "female",
    rate: float = 500.0,
    samples: np.ndarray | None = None,
) -> Prediction:
    """Store one ECG with its served verdict; ``verdict`` ("accept"/"reject") adds a signed review."""
    organization, _ = Organization.objects.get_or_create(slug=org, defaults={"name": org})
    logical_id = uuid.uuid4().hex
    resource = StoredResource.objects.create(
        resource_type="Observation", logical_id=logical_id, last_updated=timezone.now(), content={},
        organization=organization,
    )  # fmt: skip
    waveform = samples if samples is not None else np.zeros((12, 10), dtype=np.float32)
    recording = EcgRecording.objects.create(
        resource=resource, logical_id=logical_id, organization=organization, sample_rate_hz=rate, leads=LEADS,
        n_samples=waveform.shape[1], samples=waveform.astype("<f4").tobytes(), age_min_years=age,
        age_max_years=age, sex=sex, waveform_sha256="0" * 64, received_from=source,
    )  # fmt: skip
    job = AnalysisJob.objects.create(recording=recording, status=AnalysisJob.Status.SUCCEEDED)
    prediction = Prediction.objects.create(
        job=job, recording=recording, model_name=INTERPRETATION_NAME, model_version=version, score=score,
        threshold=0.5, flagged=flagged,
    )  # fmt: skip
    if verdict is not None:
        queue = Review.Queue.FLAGGED if flagged else Review.Queue.REANNOTATION
        review = Review.objects.create(job=job, prediction=prediction, recording=recording, queue=queue)
        revision = ReviewRevision.objects.create(review=review, number=1, kind=verdict, verdict=verdict)
        signed = ReviewRevision.objects.create(review=review, number=2, kind="sign", verdict=verdict)
        Review.objects.filter(pk=review.pk).update(
            status=Review.Status.SIGNED, current=signed, signed_revision=signed, decided_at=revision.created_at
        )
    return prediction


def served_population(rng: np.random.Generator, n: int, **kwargs: Any) -> list[Prediction]:
    """Store ``n`` signed ECGs: truth abnormal with probability 0.4, scores informative but noisy."""
    stored = []
    for _ in range(n):
        abnormal = bool(rng.random() < 0.4)
        score = float(np.clip(rng.normal(0.7 if abnormal else 0.3, 0.15), 0.0, 1.0))
        flagged = score >= 0.5
        verdict = "accept" if flagged == abnormal else "reject"
        stored.append(served_ecg(score=score, flagged=flagged, verdict=verdict, **kwargs))
    return stored
