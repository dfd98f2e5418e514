"""Searching Observations and Patients."""

from __future__ import annotations

from typing import Any

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_patients_three_ecgs(service_account: Any, ecg_factory: Any) -> dict[str, str]:
    ids: dict[str, str] = {}
    for mrn in ("A", "B"):
        patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": mrn}], "gender": "male"}
        ids[mrn] = service_account.post("/fhir/Patient", patient).json()["id"]
    for key, (mrn, date) in {
        "a1": ("A", "2024-01-05T08:00:00Z"),
        "a2": ("A", "2024-02-10T08:00:00Z"),
        "b1": ("B", "2023-12-31T23:00:00Z"),
    }.items():
        obs = ecg_factory(9, identifier=key, patient_reference=f"Patient/{ids[mrn]}", effective=date)
        ids[key] = service_account.post("/fhir/Observation", obs).json()["id"]
    return ids


def search_ids(client: Any, query: str) -> list[str]:
    response = client.get(f"/fhir/Observation?{query}")
    assert response.status_code == 200, response.content
    bundle = response.json()
    assert bundle["type"] == "searchset"
    return [entry["resource"]["id"] for entry in bundle["entry"]]


def test_it_searches_by_patient_identifier_code_and_date(
    service_account: Any, two_patients_three_ecgs: dict[str, str]
) -> None:
    ids = two_patients_three_ecgs
    assert set(search_ids(service_account, f"patient=Patient/{ids['A']}")) == {ids["a1"], ids["a2"]}
    assert set(search_ids(service_account, f"subject={ids['B']}")) == {ids["b1"]}
    assert search_ids(service_account, "identifier=urn:oid:1.2.3.4.ecg|a2") == [ids["a2"]]
    assert len(search_ids(service_account, "code=http://loinc.org|11524-6")) == 3
    assert search_ids(service_account, "code=http://loinc.org|0000-0") == []
    assert set(search_ids(service_account, "date=2024-01")) == {ids["a1"]}
    assert set(search_ids(service_account, "date=ge2024-01-01")) == {ids["a1"], ids["a2"]}
    assert set(search_ids(service_account, "date=lt2024-01-01")) == {ids["b1"]}
    assert set(search_ids(service_account, "date=ge2024-01-01&date=le2024-01-31")) == {ids["a1"]}


def test_it_sorts_and_pages_with_total(service_account: Any, two_patients_three_ecgs: dict[str, str]) -> None:
    ids = two_patients_three_ecgs
    assert search_ids(service_account, "_sort=date") == [ids["b1"], ids["a1"], ids["a2"]]
    assert search_ids(service_account, "_sort=-date") == [ids["a2"], ids["a1"], ids["b1"]]
    page = service_account.get("/fhir/Observation?_sort=date&_count=2").json()
    assert page["total"] == 3 and len(page["entry"]) == 2
    next_url = next(link["url"] for link in page["link"] if link["relation"] == "next")
    second = service_account.get(next_url.removeprefix("http://testserver")).json()
    assert [e["resource"]["id"] for e in second["entry"]] == [ids["a2"]]
    assert not any(link["relation"] == "next" for link in second["link"])


def test_it_finds_patients_by_identifier(service_account: Any, two_patients_three_ecgs: dict[str, str]) -> None:
    bundle = service_account.get("/fhir/Patient?identifier=urn:mrn|B").json()
    assert bundle["total"] == 1 and bundle["entry"][0]["resource"]["id"] == two_patients_three_ecgs["B"]


def test_it_refuses_a_bad_count(service_account: Any) -> None:
    response = service_account.get("/fhir/Observation?_count=-1")
    assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["_count"]
