"""Ingest use case for ECG documents (DICOM, ...): the DocumentReference is kept, its ECG analysed.

A document takes the SampledData path unchanged: it is turned into an ECG Observation
(``cds.ecg.documents``), decoded by the same decoder and stored by ``ecg_observation_ingest`` with
the same tenancy and job, plus ``derivedFrom`` the stored DocumentReference.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cds.core.exceptions import FhirError, FhirIssue
from cds.ecg.decoding import DecodedEcg
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.documents import document_observation, ecg_document_read
from cds.ecg.services import ecg_prepare
from cds.fhir.models import StoredResource
from cds.fhir.services import fhir_resource_store
from cds.pipeline.ingest import ecg_observation_ingest

_DATA = "DocumentReference.content[0].attachment.data"


def ecg_document_prepare(*, content: dict[str, Any]) -> dict[str, Any]:
    """Decode the document and its ECG before any transaction; return the ingest's extra arguments.

    Adds the document's own identifier (DICOM SOP Instance UID) to ``content["identifier"]`` when
    missing, so that the same document sent again matches the stored one (implicit conditional
    create) whatever identifiers the sender chose.
    """
    document = ecg_document_read(content)
    observation = document_observation(document, subject=None)
    try:
        decoded = ecg_prepare(content=observation)
    except FhirError as error:
        # The Observation is ours; the sender should hear about the document it sent.
        issues = [
            FhirIssue(
                code=i.code, diagnostics=f"decoded {document.format} document: {i.diagnostics}", expression=(_DATA,)
            )
            for i in error.issues
        ]
        raise FhirError(status=error.status, issues=issues) from None
    identifiers = content.setdefault("identifier", [])
    if document.identifier and isinstance(identifiers, list) and document.identifier not in identifiers:
        identifiers.append(dict(document.identifier))
    return {"document": document, "observation": observation, "decoded": decoded}


@transaction.atomic
def ecg_document_ingest(
    *,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    document: DocumentWaveform,
    observation: dict[str, Any],
    decoded: DecodedEcg,
) -> StoredResource:
    """Store the DocumentReference and the ECG Observation derived from it (with its analysis job).

    The subject is read here, after a Bundle has rewritten its ``urn:uuid`` references. Raises
    FhirError (nothing stored) when the subject does not resolve in ``organization_id``.
    """
    stored = fhir_resource_store(
        resource_type="DocumentReference", content=content, source=source, organization_id=organization_id
    )
    derived = {**observation, "derivedFrom": [{"reference": stored.reference}]}
    if content.get("subject"):
        derived["subject"] = dict(content["subject"])
    ecg_observation_ingest(
        content=derived,
        source=source,
        organization_id=organization_id,
        decoded=decoded,
        document_demographics=(document.gender, document.birth_date),
    )
    return stored
