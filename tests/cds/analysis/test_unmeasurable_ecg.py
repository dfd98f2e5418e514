"""An ECG on which some measurements are impossible: the report says what and why, invents nothing."""

from __future__ import annotations

from typing import Any

import pytest

from cds.analysis.models import AnalysisJob, Prediction
from cds.ecg.encoding import ecg_observation
from cds.pipeline.tasks import analysis_job_run
from inference.results import INTERPRETATION_NAME
from tests.conftest import LEADS_12, read_sample_record

pytestmark = pytest.mark.django_db

CHEST = ("V1", "V2", "V3", "V4", "V5", "V6")


def test_it_names_what_could_not_be_measured_on_an_ecg_without_limb_leads(service_account: Any) -> None:
    samples, header = read_sample_record(9)
    chest = samples[[LEADS_12.index(lead) for lead in CHEST]]
    observation = ecg_observation(
        chest, sample_rate_hz=header["fs"], leads=CHEST, identifier=("urn:oid:1.2.3.4.ecg", "chest-only")
    )
    response = service_account.post("/fhir/Observation", observation)
    assert response.status_code == 201, response.content
    job = AnalysisJob.objects.get(recording__logical_id=response.json()["id"])
    assert analysis_job_run(job.pk) == "succeeded"
    interpretation = Prediction.objects.get(job=job, model_name=INTERPRETATION_NAME)
    measurements = interpretation.measurements
    # No limb leads: no frontal axis, and the reason is stored and said, never a made-up value.
    for axis in ("p_axis_deg", "qrs_axis_deg", "t_axis_deg"):
        assert measurements[axis] is None
        assert measurements["not_measured"][axis]
    assert set(measurements["unusable_leads"]) >= {"I", "II", "III", "aVR", "aVL", "aVF"}
    assert measurements["heart_rate_bpm"] is not None and measurements["qrs_ms"] is not None
    text = interpretation.report_text
    assert "QRS axis:" in text and "Unusable leads, not interpreted: I (" in text
    assert "P/QRS/T axes —/—/—°" in text
    assert "Preliminary AI-generated draft" in text
