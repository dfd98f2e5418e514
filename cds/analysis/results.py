"""Store one analysis' results in the analysis app: predictions and the FHIR result resources."""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from cds.analysis.fhir_results import ResultEntry
from cds.analysis.interpretation import interpretation_prediction_fields
from cds.analysis.models import AnalysisJob, Prediction, ResultResource
from cds.ecg.models import EcgRecording
from cds.fhir.references import ehr_reference, rewrite_references
from cds.fhir.services import fhir_resource_store
from inference.analysis_result import AnalysisResult
from inference.clinical.types import INTERPRETATION_VERSION
from inference.results import INTERPRETATION_NAME

RESULT_SOURCE = "ecg-cds"


def _map_bytes(anomaly_map: np.ndarray) -> bytes:
    return np.ascontiguousarray(anomaly_map, dtype="<f2").tobytes()


def _provenance(recording: EcgRecording) -> dict[str, Any]:
    return {
        "waveform_sha256": recording.waveform_sha256,
        "observation": f"Observation/{recording.logical_id}",
        "leads": recording.leads,
        "sample_rate_hz": recording.sample_rate_hz,
        "n_samples": recording.n_samples,
        "received_from": recording.received_from,
    }


def predictions_create(*, job: AnalysisJob, result: AnalysisResult) -> list[Prediction]:
    """Create one Prediction per model version that ran, and one for the interpretation when there is one."""
    return Prediction.objects.bulk_create(prediction_rows(job=job, result=result))


def prediction_rows(*, job: AnalysisJob, result: AnalysisResult) -> list[Prediction]:
    """Return, unsaved, the Predictions of ``predictions_create`` (a shadow run renames them first)."""
    detector = result.detector
    rows = [
        Prediction(
            job=job,
            recording=job.recording,
            model_name=detector.model_name,
            model_version=detector.model_version,
            server_model_version=detector.server_model_version,
            score=detector.score,
            threshold=detector.threshold,
            flagged=detector.flagged,
            per_lead_scores=detector.per_lead_scores,
            intervals=[vars(i) for i in detector.intervals],
            anomaly_map=_map_bytes(detector.anomaly_map),
            map_rate_hz=detector.map_rate_hz,
            map_leads=list(detector.leads),
            quality=list(detector.quality),
            timings=detector.timings_ms,
            input_provenance=_provenance(job.recording),
        )
    ]
    foundation = result.foundation
    if foundation is not None:
        rows.append(
            Prediction(
                job=job,
                recording=job.recording,
                model_name=foundation.model_name,
                model_version=foundation.model_version,
                server_model_version=foundation.server_model_version,
                score=foundation.probability_abnormal,
                probabilities={"abnormal": foundation.probability_abnormal, **foundation.superclass_probabilities},
                report_text=foundation.report_text,
                review_priority=foundation.review_priority,
                timings=foundation.timings_ms,
                input_provenance=_provenance(job.recording) | {"leads_used": list(foundation.leads_used)},
            )
        )
    interpretation = _interpretation_row(job, result)
    if interpretation is not None:
        rows.append(interpretation)
    return rows


def _interpretation_row(job: AnalysisJob, result: AnalysisResult) -> Prediction | None:
    """Return the rule-based interpretation's row: measurements, findings, the one verdict, the report.

    Its provenance names the model versions whose outputs it combined, beside the waveform's.
    """
    if result.clinical is None:
        return None
    combined = {result.detector.model_name: result.detector.model_version}
    if result.foundation is not None:
        combined[result.foundation.model_name] = result.foundation.model_version
    recalibration = (result.clinical.combined or {}).get("recalibration")
    if result.clinical.combined:
        combined["verdict-combiner"] = result.clinical.combined["combiner_version"]
        if recalibration:  # issue 19: the site's approved recalibration restated the probability
            combined["site-recalibration"] = f"{recalibration['id']}:v{recalibration['version']}"
    return Prediction(
        job=job,
        recording=job.recording,
        model_name=INTERPRETATION_NAME,
        model_version=INTERPRETATION_VERSION,
        input_provenance=_provenance(job.recording)
        | {"model_outputs": combined}
        | ({"recalibration": recalibration} if recalibration else {}),
        **interpretation_prediction_fields(result.clinical, result.measurements),
    )


def local_references(recording: EcgRecording) -> tuple[dict[str, Any], dict[str, Any] | None]:
    ecg = {"reference": f"Observation/{recording.logical_id}"}
    patient = {"reference": f"Patient/{recording.patient.logical_id}"} if recording.patient else None
    return ecg, patient


def remote_references(recording: EcgRecording) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Reference the EHR's own ECG and Patient by business identifier, with our absolute URL beside it."""
    patient = ehr_reference(recording.patient.resource) if recording.patient else None
    return ehr_reference(recording.resource), patient


def result_resources_store(*, job: AnalysisJob, entries: list[ResultEntry]) -> None:
    """Store the result resources in our FHIR store (urn:uuid references made local) and link them to the job."""
    mapping = {}
    for entry in entries:
        entry.resource["id"] = entry.logical_id or uuid.uuid4().hex
        mapping[entry.full_url] = f"{entry.resource_type}/{entry.resource['id']}"
    for entry in entries:
        rewrite_references(entry.resource, mapping)
        stored = fhir_resource_store(
            resource_type=entry.resource_type,
            content=entry.resource,
            source=RESULT_SOURCE,
            organization_id=job.recording.organization_id,  # results belong with their ECG
        )
        ResultResource.objects.create(job=job, resource=stored, role=entry.role)
