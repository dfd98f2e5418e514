"""Versioned updates of stored resources (used when clinicians sign reports)."""

from __future__ import annotations

from typing import Any

import pytest

from cds.core.exceptions import FhirError
from cds.fhir.models import StoredResource
from cds.fhir.services import fhir_resource_update

pytestmark = pytest.mark.django_db


def test_it_adds_a_version_and_keeps_the_old_one(service_account: Any, patient_resource: dict[str, Any]) -> None:
    created = service_account.post("/fhir/Patient", patient_resource).json()
    updated = fhir_resource_update(
        resource_type="Patient",
        logical_id=created["id"],
        content={**created, "gender": "male"},
        source="test",
        expected_version=1,
    )
    assert updated.version_id == 2 and updated.content["meta"]["versionId"] == "2"
    assert service_account.get(f"/fhir/Patient/{created['id']}").json()["gender"] == "male"
    assert service_account.get(f"/fhir/Patient/{created['id']}/_history/1").json()["gender"] == "female"
    assert service_account.get("/fhir/Patient?gender=male").json()["total"] == 1
    assert service_account.get("/fhir/Patient?gender=female").json()["total"] == 0
    assert StoredResource.objects.filter(logical_id=created["id"]).count() == 2


def test_it_refuses_a_stale_version_and_an_unknown_resource(
    service_account: Any, patient_resource: dict[str, Any]
) -> None:
    created = service_account.post("/fhir/Patient", patient_resource).json()
    with pytest.raises(FhirError) as stale:
        fhir_resource_update(
            resource_type="Patient", logical_id=created["id"], content=created, source="t", expected_version=3
        )
    assert stale.value.status == 412
    with pytest.raises(FhirError) as missing:
        fhir_resource_update(resource_type="Patient", logical_id="nope", content=created, source="t")
    assert missing.value.status == 404
