"""Ingest use case: an ECG Observation is stored and its analysis queued (docs/style.md E1)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cds.analysis.services import analysis_job_create
from cds.ecg.decoding import DecodedEcg
from cds.ecg.services import ecg_recording_create
from cds.fhir.models import StoredResource


@transaction.atomic
def ecg_observation_ingest(
    *,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    decoded: DecodedEcg | None = None,
    document_demographics: tuple[str, str] = ("", ""),
) -> StoredResource:
    """Store an ECG Observation and its waveform, and create its pending analysis job.

    The job is enqueued only after commit, so a worker never sees a job whose ECG is not yet visible.
    Raises FhirError (nothing stored) when the Observation is not an ECG, its subject does not
    resolve, or its waveform fails decoding or the acceptance limits.
    """
    recording = ecg_recording_create(
        content=content,
        source=source,
        organization_id=organization_id,
        decoded=decoded,
        document_demographics=document_demographics,
    )
    analysis_job_create(recording=recording)
    return recording.resource
