"""Issue 15: the quality dashboard shows the CDS Hooks card feedback per model version and site."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from cds.analysis.models import AnalysisJob, Prediction
from cds.review.models import CardFeedback, IssuedCard
from inference.results import DETECTOR_NAME

pytestmark = pytest.mark.django_db


def test_the_dashboard_lists_overrides_with_their_reason_and_comment(
    admin_client: Any, analysed_ecg: Callable[..., AnalysisJob]
) -> None:
    job = analysed_ecg(score=2.5)
    detector = Prediction.objects.get(job=job, model_name=DETECTOR_NAME)
    card = IssuedCard.objects.create(uuid=uuid.uuid4(), prediction=detector, organization=job.recording.organization)
    for minutes, outcome, comment in ((1, "overridden", "noisy V2 <b>"), (2, "accepted", "")):
        CardFeedback.objects.create(
            card=card, organization=card.organization, client_id="ehr", outcome=outcome,
            reason_code="poor-quality" if comment else "", reason_display="Artefact / poor signal quality" if comment else "",
            comment=comment, outcome_at=timezone.now() - timedelta(minutes=minutes),
        )  # fmt: skip

    page = admin_client.get("/admin/review/qualityprediction/dashboard/").content.decode()

    section = page[page.index('id="card-feedback"') :]
    site = f"{job.recording.organization.slug}/{job.recording.received_from}"
    assert f"<td>{detector.model_version}</td><td>{site}</td><td>2</td><td>1</td><td>1</td><td>0.50</td>" in section
    assert "Artefact / poor signal quality: 1" in section
    assert "noisy V2 &lt;b&gt;" in section  # a clinician's comment is text, never markup
