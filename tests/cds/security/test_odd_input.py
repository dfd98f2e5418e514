"""The odd inputs that used to answer 500 (issue 13): each now gets a clear 4xx, and nothing is stored."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds.ecg.models import Patient
from cds.fhir.models import SearchIndexEntry, StoredResource
from tests.cds.fhir.test_bad_input import assert_outcome

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("query", "code", "expression"),
    [
        ("birthdate=9999-12-31T23:59:59Z", "value", "birthdate"),
        ("birthdate=9999-12-31", "value", "birthdate"),
        ("birthdate=lt0001-01-01T00:00:00%2B01:00", "value", "birthdate"),
        ("_count=%C2%B2", "value", "_count"),  # "²": str.isdigit() says yes, int() says no
        ("_count=%D9%A3", "value", "_count"),  # Arabic-Indic three
        ("_offset=100000000000000000000", "too-costly", "_offset"),
        ("_offset=1000001", "too-costly", "_offset"),
    ],
)
def test_it_refuses_odd_search_values_with_a_400(service_account: Any, query: str, code: str, expression: str) -> None:
    assert_outcome(service_account.get(f"/fhir/Patient?{query}"), 400, code, expression)


def test_it_still_pages_at_a_large_but_bounded_offset(service_account: Any) -> None:
    response = service_account.get("/fhir/Patient?_offset=1000000&_count=5")
    assert response.status_code == 200 and response.json()["total"] == 0


@pytest.mark.parametrize(("element", "path"), [("value", "identifier[0].value"), ("system", "identifier[0].system")])
def test_it_refuses_an_identifier_longer_than_the_index_holds(
    service_account: Any, patient_resource: dict[str, Any], element: str, path: str
) -> None:
    patient = copy.deepcopy(patient_resource)
    patient["identifier"][0][element] = "urn:x:" + "9" * 300
    assert_outcome(service_account.post("/fhir/Patient", patient), 400, "value", f"Patient.{path}")
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": patient, "request": {"method": "POST", "url": "Patient"}}],
    }
    assert_outcome(service_account.post("/fhir", bundle), 400, "value", f"Bundle.entry[0].resource.{path}")
    assert StoredResource.objects.count() == 0 and SearchIndexEntry.objects.count() == 0


def test_it_refuses_too_many_identifiers(service_account: Any, patient_resource: dict[str, Any]) -> None:
    patient = copy.deepcopy(patient_resource)
    patient["identifier"] = [{"system": "urn:x", "value": str(i)} for i in range(21)]
    assert_outcome(service_account.post("/fhir/Patient", patient), 400, "too-costly", "Patient.identifier")
    assert Patient.objects.count() == 0


def test_it_refuses_a_deeply_nested_body_holding_a_nul(service_account: Any) -> None:
    depth = 50_000
    body = '{"resourceType": "Patient", "extension": ' + "[" * depth + '"\\u0000"' + "]" * depth + "}"
    response = service_account.post("/fhir/Patient", body)
    assert response.status_code == 400, response.content[:300]
    assert response.json()["resourceType"] == "OperationOutcome"
    assert StoredResource.objects.count() == 0


def test_it_finds_a_nul_in_a_moderately_nested_body_without_recursing(service_account: Any) -> None:
    depth = 900  # under json's limit, over what a recursive walk of the middleware could afford twice
    body = '{"resourceType": "Patient", "extension": ' + "[" * depth + '"\\u0000"' + "]" * depth + "}"
    response = service_account.post("/fhir/Patient", body)
    assert response.status_code == 400
    assert response.json()["issue"][0]["expression"][0].startswith("Patient.extension[0][0]")


def _hook(prefetch: Any) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": "p-1"},
        "prefetch": prefetch,
    }


@pytest.mark.parametrize(
    "prefetch",
    [
        {"patient": ["not", "an", "object"]},
        {"patient": "Patient/1"},
        {"patient": {"identifier": "MRN-1"}},
        {"patient": {"identifier": ["MRN-1", 5, None, {"value": 5}, {"system": ["x"], "value": "1"}]}},
        {"patient": None},
    ],
)
def test_it_answers_a_hook_with_an_odd_prefetch_without_failing(service_account: Any, prefetch: Any) -> None:
    response = service_account.post("/cds-services/ecg-ai-findings", _hook(prefetch), content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"cards": []}


@pytest.mark.parametrize("object_id", ["abc", "1.5", "%C2%B2", "99999999999999999999999"])
def test_it_answers_a_non_numeric_review_id_like_a_missing_review(clinician: Any, object_id: str) -> None:
    assert clinician.client.get(f"/admin/review/review/{object_id}/change/").status_code == 403


def test_it_ignores_an_impossible_dashboard_date_with_a_warning(auditor: Any) -> None:
    response = auditor.client.get("/admin/review/qualityprediction/dashboard/?since=2024-02-30&until=2024-13-01")
    assert response.status_code == 200
    text = response.content.decode()
    assert "is not a date (YYYY-MM-DD); it was ignored" in text, [line for line in text.splitlines() if "2024" in line]


# Search parameters fuzzed like the create paths: any value of any supported parameter is a 200 or a
# 4xx OperationOutcome, never a 500.
_PARAMS = ["_id", "identifier", "gender", "birthdate", "_count", "_offset", "_sort", "subject", "code", "date"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    resource_type=st.sampled_from(["Patient", "Observation"]),
    name=st.sampled_from(_PARAMS),
    value=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=300),
)
def test_it_never_fails_a_fuzzed_search_with_a_500(
    client: Client, service_token: str, resource_type: str, name: str, value: str
) -> None:
    response = client.get(f"/fhir/{resource_type}", {name: value}, HTTP_AUTHORIZATION=f"Bearer {service_token}")
    assert response.status_code in {200, 400}, (name, value, response.content[:300])
    if response.status_code == 400:
        assert json.loads(response.content)["resourceType"] == "OperationOutcome"


@pytest.fixture
def service_token(client: Client) -> str:
    from tests.conftest import api_client_token

    return api_client_token(client, "system/*.rs")


def test_it_refuses_a_bundle_with_too_many_entries_before_reading_them(service_account: Any) -> None:
    entry = {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry] * 201}
    assert_outcome(service_account.post("/fhir", bundle), 413, "too-costly", "Bundle.entry")
    assert Patient.objects.count() == 0


def test_it_refuses_an_observation_with_too_many_components(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(9)
    observation["component"] = observation["component"] * 21  # 252 components
    assert_outcome(service_account.post("/fhir/Observation", observation), 400, "too-costly", "Observation.component")
    assert StoredResource.objects.count() == 0
