"""Create FHIR resources posted to ``/fhir``: one creator per type, plain and conditional create."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from django.db import transaction

from cds.ecg.services import ecg_prepare, patient_create, patient_update
from cds.fhir.models import StoredResource
from cds.fhir.services import conditional_match
from cds.pipeline.documents import ecg_document_ingest, ecg_document_prepare
from cds.pipeline.ingest import ecg_observation_ingest
from cds.pipeline.retraction import ecg_observation_update


@dataclass(frozen=True)
class CreateOutcome:
    """The stored resource and whether this request created it (False: conditional match)."""

    resource: StoredResource
    created: bool


ResourceCreator = Callable[..., StoredResource]


# The domain service that creates each writable type (docs/style.md E2): this layer may import them all.
CREATORS: dict[str, ResourceCreator] = {
    "Patient": patient_create,
    "Observation": ecg_observation_ingest,
    "DocumentReference": ecg_document_ingest,  # an ECG document (DICOM, ...): kept, and its ECG ingested
}
# Types whose business identifier names one recording, so a resend matches the stored resource.
_IDENTIFIED_TYPES = frozenset({"Observation", "DocumentReference"})


# The domain service that updates each writable type: Patient demographics; an ECG only retracted.
UPDATERS: dict[str, ResourceCreator] = {"Patient": patient_update, "Observation": ecg_observation_update}


def resource_update(
    *,
    resource_type: str,
    logical_id: str,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    expected_version: int | None,
) -> StoredResource:
    """Update a resource of ``organization_id`` through its domain service (FhirError 404/405/412/422)."""
    return UPDATERS[resource_type](
        logical_id=logical_id,
        content=content,
        source=source,
        organization_id=organization_id,
        expected_version=expected_version,
    )


def identity_query(*, resource_type: str, content: dict[str, Any]) -> str | None:
    """Return the implicit ``If-None-Exist`` of an ECG: ``identifier=`` any of its identifiers; None without.

    An ECG Observation's business identifier names one recording: a second one with the same
    identifier in the same organisation is the first one resent (a retry after a lost answer), so
    it returns the stored ECG instead of a duplicate ECG, job, review and write-back.
    """
    if resource_type not in _IDENTIFIED_TYPES:
        return None
    tokens = [
        quote(f"{item.get('system', '')}|{item['value']}", safe=":|/")
        for item in content.get("identifier") or []
        if isinstance(item, dict) and isinstance(item.get("value"), str) and item["value"]
    ]
    return "identifier=" + ",".join(tokens) if tokens else None


def resource_prepare(*, resource_type: str, content: dict[str, Any]) -> dict[str, Any]:
    """Do a resource's CPU-bound checks before any transaction; return extra creator arguments."""
    if resource_type == "Observation":
        return {"decoded": ecg_prepare(content=content)}
    if resource_type == "DocumentReference":
        return ecg_document_prepare(content=content)
    return {}


def resource_creator(resource_type: str) -> ResourceCreator:
    """Return the domain service that creates a resource of this type."""
    return CREATORS[resource_type]


def resource_create(
    *,
    resource_type: str,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    if_none_exist: str | None = None,
) -> CreateOutcome:
    """Create a resource of ``organization_id``, or return its existing one when ``if_none_exist`` matches it.

    Raises FhirError for a conditional query matching several resources (412) or for content the
    domain service refuses; nothing is stored then.
    """
    content = {key: value for key, value in content.items() if key != "id"}  # the server assigns ids
    prepared = resource_prepare(resource_type=resource_type, content=content)
    with transaction.atomic():
        return _resource_create_in_transaction(
            resource_type=resource_type,
            content=content,
            source=source,
            organization_id=organization_id,
            if_none_exist=if_none_exist,
            prepared=prepared,
        )


def _resource_create_in_transaction(
    *,
    resource_type: str,
    content: dict[str, Any],
    source: str,
    organization_id: int,
    if_none_exist: str | None,
    prepared: dict[str, Any],
) -> CreateOutcome:
    query = if_none_exist or identity_query(resource_type=resource_type, content=content)
    if query:
        existing = conditional_match(
            resource_type=resource_type,
            query=query,
            expression="If-None-Exist" if if_none_exist else f"{resource_type}.identifier",
            organization_id=organization_id,
        )
        if existing is not None:
            return CreateOutcome(resource=existing, created=False)
    resource = resource_creator(resource_type)(
        content=content, source=source, organization_id=organization_id, **prepared
    )
    return CreateOutcome(resource=resource, created=True)
