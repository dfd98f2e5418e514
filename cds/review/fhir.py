"""FHIR side of signing: new versions of the DiagnosticReport and Task, and the EHR write-back.

Our store gets new versions of the resources written at analysis time (found through
``ResultResource`` roles ``report`` and ``review-task``). The EHR gets a transaction Bundle of
conditional updates (``PUT DiagnosticReport?identifier=...``): the EHR assigned its own ids when it
created them, and the business identifiers are what both sides share (references to the result
Observations and the report are conditional references, resolved by the EHR in the transaction).
"""

from __future__ import annotations

import base64
import copy
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from cds.analysis.models import ResultResource
from cds.analysis.results import RESULT_SOURCE
from cds.fhir.dates import fhir_instant
from cds.fhir.models import StoredResource
from cds.fhir.references import ehr_reference, identifier_search
from cds.fhir.services import fhir_resource_update
from cds.review.models import Review, ReviewRevision
from cds.review.scp import SCP_STATEMENTS, scp_concept
from cds.writeback.services import outbox_enqueue

USER_IDENTIFIER_SYSTEM = "urn:ecg-cds:user"  # legacy; clinicians are now identified by practitioner_identifier()


def practitioner_identifier(user: Any) -> dict[str, str]:
    """Return the clinician's identifier in what we publish: an opaque id, never the login name.

    A username published in every signed DiagnosticReport is half of a credential handed to every
    reader of the record (and a list of accounts to spray passwords at).
    """
    return {"system": f"{settings.WRITEBACK_IDENTIFIER_SYSTEM}/practitioner", "value": f"user-{user.pk}"}


def _performer(user: Any) -> dict[str, Any]:
    # We hold no Practitioner resources: a logical Practitioner reference by identifier, with the
    # clinician's name as display (a report names its signer), never the username.
    return {
        "type": "Practitioner",
        "identifier": practitioner_identifier(user),
        "display": user.get_full_name() or f"Clinician {user.pk}",
    }


def _security(content: dict[str, Any]) -> dict[str, Any]:
    # Keep the AIAST label: the findings are still AI-derived, now with a clinician's signature.
    return {"security": list((content.get("meta") or {}).get("security") or [])}


def _now() -> str:
    return fhir_instant(timezone.now())


def signed_report(content: dict[str, Any], *, revision: ReviewRevision, user: Any, amended: bool) -> dict[str, Any]:
    """Return the DiagnosticReport as signed: status, conclusion, coded labels, performer, text.

    conclusionCode: the clinician's SCP labels when given; else the AI's SNOMED CT findings when the
    clinician confirmed the AI call; else none.
    """
    report = copy.deepcopy(content)
    report["meta"] = _security(content)
    report["status"] = "amended" if amended else "final"
    report["issued"] = _now()
    report["conclusion"] = revision.report_text
    report["performer"] = [_performer(user)]
    report["resultsInterpreter"] = [_performer(user)]
    codes = [
        scp_concept(code)  # SNOMED CT for the EHR, the SCP code beside it
        for code in revision.scp_labels
        if code in SCP_STATEMENTS
    ]
    if codes:
        report["conclusionCode"] = codes
    elif revision.verdict != "accept":
        # A rejected AI call keeps none of the AI's coded findings; a confirmed one keeps them.
        report.pop("conclusionCode", None)
    report["presentedForm"] = [
        {
            "contentType": "text/plain; charset=utf-8",
            "language": "en",
            "data": base64.b64encode(revision.report_text.encode()).decode(),
            "title": "ECG report (signed by a clinician)",
        }
    ]
    return report


def completed_task(content: dict[str, Any], *, revision: ReviewRevision, user: Any) -> dict[str, Any]:
    """Return the review Task completed by ``user``, with the verdict as its output."""
    task = copy.deepcopy(content)
    task["meta"] = _security(content)
    task["status"] = "completed"
    task["lastModified"] = _now()
    task["owner"] = _performer(user)
    verdict = {"accept": "AI finding confirmed", "reject": f"AI finding rejected: {revision.reason}"}.get(
        revision.verdict, "reviewed"
    )
    task["output"] = [{"type": {"text": "review verdict"}, "valueString": verdict}]
    return task


def _remote(resource: dict[str, Any], *, recording: Any) -> dict[str, Any]:
    """Rewrite our local references (Patient, Observations, the report) into identifier references."""
    remote = copy.deepcopy(resource)
    remote.pop("id", None)
    remote["meta"] = _security(resource)
    if recording.patient is not None:
        subject = ehr_reference(recording.patient.resource)
        for key in ("subject", "for"):
            if key in remote:
                remote[key] = subject
    return remote


def _link_by_identifier(reference: dict[str, Any], stored: dict[str, StoredResource]) -> dict[str, Any]:
    """Return a conditional reference (``Observation?identifier=...``) the EHR resolves to its own id.

    R4 transactions resolve conditional references server-side; we never learn the EHR's ids.
    """
    target = stored.get(reference.get("reference", ""))
    if target is None or not target.content.get("identifier"):
        return reference
    return {"reference": _conditional_url(target.resource_type, target.content), "type": target.resource_type}


def _conditional_url(resource_type: str, content: dict[str, Any]) -> str:
    return f"{resource_type}?{identifier_search(content['identifier'][0])}"


def signed_resources_store(
    *, review: Review, revision: ReviewRevision, user: Any, amended: bool
) -> list[StoredResource]:
    """Store the signed DiagnosticReport and completed Task (new versions) and queue them to the EHR.

    Returns the new versions. A job without stored result resources (none written) stores nothing.
    """
    links = {
        link.role: link.resource
        for link in ResultResource.objects.filter(job=review.job, role__in=["report", "review-task"]).select_related(
            "resource"
        )
    }
    updated: list[StoredResource] = []
    current = {
        role: StoredResource.objects.get(resource_type=r.resource_type, logical_id=r.logical_id, is_current=True)
        for role, r in links.items()
    }
    if "report" in current:
        content = signed_report(current["report"].content, revision=revision, user=user, amended=amended)
        updated.append(_update(current["report"], content))
    if "review-task" in current:
        content = completed_task(current["review-task"].content, revision=revision, user=user)
        updated.append(_update(current["review-task"], content))
    if settings.WRITEBACK_ENABLED and updated:
        outbox_enqueue(
            key=f"review-sign:{review.pk}:{revision.pk}",
            bundle=signed_bundle(review=review, resources=updated),
            ordering_key=f"ecg:{review.recording_id}",  # after the results Bundle and earlier signatures
        )
    return updated


def _update(current: StoredResource, content: dict[str, Any]) -> StoredResource:
    return fhir_resource_update(
        resource_type=current.resource_type,
        logical_id=current.logical_id,
        content=content,
        source=RESULT_SOURCE,
        expected_version=current.version_id,
    )


def signed_bundle(*, review: Review, resources: list[StoredResource]) -> dict[str, Any]:
    """Return the EHR transaction Bundle: conditional updates of the report and the Task."""
    return conditional_put_bundle(job=review.job, recording=review.recording, resources=resources)


def conditional_put_bundle(*, job: Any, recording: Any, resources: list[StoredResource]) -> dict[str, Any]:
    """Return a transaction Bundle updating ``resources`` in the EHR by business identifier (conditional PUT).

    Used for signatures and for retractions: references between the job's results, and to the
    ECG itself, become references the EHR resolves (by identifier), never our ids.
    """
    referenced = {
        f"{link.resource.resource_type}/{link.resource.logical_id}": link.resource
        for link in ResultResource.objects.filter(job=job).select_related("resource")
    }
    ecg_local = f"Observation/{recording.logical_id}"
    entries = []
    for stored in resources:
        resource = _remote(stored.content, recording=recording)
        if "result" in resource:
            resource["result"] = [_link_by_identifier(r, referenced) for r in resource["result"]]
        if "focus" in resource:
            resource["focus"] = _link_by_identifier(resource["focus"], referenced)
        if "derivedFrom" in resource:
            resource["derivedFrom"] = [
                ehr_reference(recording.resource)
                if r.get("reference") == ecg_local
                else _link_by_identifier(r, referenced)
                for r in resource["derivedFrom"]
            ]
        entries.append(
            {
                "fullUrl": f"urn:uuid:{uuid.uuid4()}",
                "resource": resource,
                "request": {"method": "PUT", "url": _conditional_url(stored.resource_type, resource)},
            }
        )
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
