"""Updates of an ECG Observation: the one change allowed is its retraction (``entered-in-error``).

An ECG sent for the wrong patient, or in error, is retracted by the EHR with a PUT of the same
Observation with ``status: entered-in-error``. We then cancel its analysis if no worker has it
yet, mark every result we stored for it ``entered-in-error`` (new versions; the old ones stay
readable), and queue the same retraction to the EHR through the outbox, after the results Bundle
(same ordering key), so the EHR never keeps results of a retracted ECG.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction

from cds.analysis.models import AnalysisJob, ResultResource
from cds.analysis.results import RESULT_SOURCE
from cds.analysis.services import analysis_jobs_cancel
from cds.core.exceptions import FhirError
from cds.ecg.models import EcgRecording
from cds.fhir.models import StoredResource
from cds.fhir.services import fhir_resource_update
from cds.review.fhir import conditional_put_bundle
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_enqueue

RETRACTED = "entered-in-error"
# Result types whose status can say entered-in-error (Provenance has no status; Devices are shared).
_RETRACTABLE = {"Observation", "DiagnosticReport", "Task"}
# What a retraction may change besides ``status``: the server-managed and narrative elements.
_IGNORED = {"status", "meta", "id", "text"}


def _check_only_status_changes(current: dict[str, Any], content: dict[str, Any]) -> None:
    changed = sorted(k for k in set(current) | set(content) if k not in _IGNORED and current.get(k) != content.get(k))
    if changed:
        raise FhirError.single(
            422,
            "not-supported",
            f"an ECG cannot be edited (changed: {', '.join(changed)}); retract it (status entered-in-error) "
            "and send the corrected ECG as a new Observation",
            f"Observation.{changed[0]}",
        )
    if content.get("status") != RETRACTED:
        raise FhirError.single(
            422,
            "not-supported",
            f"the only status change accepted for an ECG is to {RETRACTED!r}, not {content.get('status')!r}",
            "Observation.status",
        )


def results_retract(*, job: AnalysisJob) -> list[StoredResource]:
    """Mark a job's stored results entered-in-error (new versions); return the new versions."""
    retracted = []
    for link in ResultResource.objects.filter(job=job).select_related("resource"):
        if link.resource.resource_type not in _RETRACTABLE:
            continue
        current = StoredResource.objects.get(
            resource_type=link.resource.resource_type, logical_id=link.resource.logical_id, is_current=True
        )
        if current.content.get("status") == RETRACTED:
            continue
        retracted.append(
            fhir_resource_update(
                resource_type=current.resource_type,
                logical_id=current.logical_id,
                content={**current.content, "status": RETRACTED},
                source=RESULT_SOURCE,
                expected_version=current.version_id,
            )
        )
    if retracted and settings.WRITEBACK_ENABLED and OutboxMessage.objects.filter(key=f"analysis-job:{job.pk}").exists():
        outbox_enqueue(
            key=f"retraction:{job.pk}",
            bundle=conditional_put_bundle(job=job, recording=job.recording, resources=retracted),
            ordering_key=f"ecg:{job.recording_id}",  # after the results it retracts
        )
    return retracted


def ecg_is_retracted(recording: EcgRecording) -> bool:
    """Return True when the ECG's current version is entered-in-error."""
    current = StoredResource.objects.filter(
        resource_type="Observation", logical_id=recording.logical_id, is_current=True
    ).first()
    return current is not None and current.content.get("status") == RETRACTED


@transaction.atomic
def ecg_observation_update(
    *, logical_id: str, content: dict[str, Any], source: str, organization_id: int, expected_version: int | None
) -> StoredResource:
    """Retract an ECG of ``organization_id``: new version, analysis cancelled, results retracted, EHR told.

    Raises FhirError: 404 for an unknown (or another organisation's) ECG, 405 for an Observation
    the service wrote (an AI result), 412 for a stale ``If-Match``, 422 for any other change.
    """
    current = StoredResource.objects.filter(
        resource_type="Observation", logical_id=logical_id, is_current=True, organization_id=organization_id
    ).first()
    if current is None:
        raise FhirError.single(404, "not-found", f"Observation/{logical_id} is not known")
    recording = EcgRecording.objects.filter(logical_id=logical_id, organization_id=organization_id).first()
    if recording is None:
        raise FhirError.single(
            405, "not-supported", f"Observation/{logical_id} is a result the service wrote; clients may not update it"
        )
    if expected_version is not None and expected_version != current.version_id:
        raise FhirError.single(
            412, "conflict", f"Observation/{logical_id} is at version {current.version_id}, not {expected_version}"
        )
    if current.content.get("status") == RETRACTED and content.get("status") == RETRACTED:
        return current  # already retracted: the same request again changes nothing
    _check_only_status_changes(current.content, content)
    updated = fhir_resource_update(
        resource_type="Observation",
        logical_id=logical_id,
        content={**current.content, "status": RETRACTED},
        source=source,
        expected_version=current.version_id,
        organization_id=organization_id,
    )
    analysis_jobs_cancel(recording_id=recording.pk)
    for job in AnalysisJob.objects.filter(recording=recording).select_related("recording"):
        results_retract(job=job)
    return updated
