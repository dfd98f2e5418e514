"""Analysed ECGs in the review worklists, on ward-a (the clinicians' care team) or ward-b."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from cds.analysis.models import AnalysisJob
from cds.ecg.models import EcgRecording
from cds.pipeline.analysis import analysis_results_store
from cds.review.models import Review
from inference.clinical.types import ClinicalReport, EcgMeasurements
from tests.cds.factories import make_result, with_interpretation
from tests.conftest import CARE_TEAM_SOURCE


@pytest.fixture
def analysed_ecg(
    service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]
) -> Callable[..., AnalysisJob]:
    """Return a builder: ingest a sample ECG for one patient, store its analysis (interpretation when given), set its source."""
    state: dict[str, str] = {}

    def build(
        *,
        ecg_id: int = 63,
        score: float = 2.5,
        source: str = CARE_TEAM_SOURCE,
        effective: str = "2024-03-01T10:00:00Z",
        review_priority: float | None = None,
        probability_abnormal: float = 0.8,
        clinical: ClinicalReport | None = None,
        measurements: EcgMeasurements | None = None,
    ) -> AnalysisJob:
        if "patient" not in state:
            state["patient"] = service_account.post("/fhir/Patient", patient_resource).json()["id"]
        observation = ecg_factory(
            ecg_id,
            identifier=f"ecg-{ecg_id}-{effective}",
            patient_reference=f"Patient/{state['patient']}",
            effective=effective,
        )
        response = service_account.post("/fhir/Observation", observation)
        assert response.status_code == 201, response.content
        EcgRecording.objects.filter(logical_id=response.json()["id"]).update(received_from=source)
        job = AnalysisJob.objects.select_related("recording").get(recording__logical_id=response.json()["id"])
        result = make_result(score=score)
        assert result.foundation is not None
        foundation = dataclasses.replace(
            result.foundation, review_priority=review_priority, probability_abnormal=probability_abnormal
        )
        result = dataclasses.replace(result, foundation=foundation)
        if clinical is not None:
            result = with_interpretation(result, clinical, measurements)
        analysis_results_store(job=job, result=result)
        return job

    return build


@pytest.fixture
def flagged_review(analysed_ecg: Callable[..., AnalysisJob]) -> Review:
    """A pending review of a flagged ECG from ward-a."""
    return Review.objects.get(job=analysed_ecg())
