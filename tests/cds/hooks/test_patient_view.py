"""CDS Hooks 2.0: discovery and patient-view cards from stored predictions."""

from __future__ import annotations

import time
from typing import Any

import pytest

from cds.review.models import Review

pytestmark = pytest.mark.django_db


def test_it_serves_discovery_without_a_token(client: Any) -> None:
    body = client.get("/cds-services").json()
    service = body["services"][0]
    assert service["hook"] == "patient-view" and service["id"] == "ecg-ai-findings"
    assert service["prefetch"] == {"patient": "Patient/{{context.patientId}}"}


def hook_request(patient_id: str, prefetch: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
        "prefetch": prefetch or {},
    }


def test_it_returns_cards_flagged_first_with_a_review_link(service_account: Any, analysed_patient: str) -> None:
    started = time.perf_counter()
    response = service_account.post(
        "/cds-services/ecg-ai-findings", hook_request(analysed_patient), content_type="application/json"
    )
    elapsed = time.perf_counter() - started
    assert response.status_code == 200, response.content
    cards = response.json()["cards"]
    assert [c["indicator"] for c in cards] == ["warning", "info"]
    assert cards[0]["summary"].startswith("ECG 2024-03-01: AI flagged")
    assert "sinus rhythm" in cards[0]["detail"] and "Preliminary" in cards[0]["detail"]
    # CDS Hooks 2.0 Link of type smart (issue 15): the EHR launches the review; appContext names it.
    link = cards[0]["links"][0]
    assert {k: link[k] for k in ("url", "type")} == {"url": "http://testserver/smart/launch", "type": "smart"}
    review = Review.objects.get(pk=int(link["appContext"].removeprefix("review/")))
    assert review.recording.patient.logical_id == analysed_patient and review.prediction.flagged
    assert all(len(c["summary"]) <= 140 for c in cards)
    assert elapsed < 0.5


def test_it_matches_the_ehr_patient_by_identifier_from_prefetch(service_account: Any, analysed_patient: str) -> None:
    prefetch = {
        "patient": {
            "resourceType": "Patient",
            "id": "ehr-42",
            "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"}],
        }
    }
    response = service_account.post(
        "/cds-services/ecg-ai-findings", hook_request("ehr-42", prefetch), content_type="application/json"
    )
    assert len(response.json()["cards"]) == 2


def test_it_returns_no_cards_for_an_unknown_patient(service_account: Any, analysed_patient: str) -> None:
    response = service_account.post(
        "/cds-services/ecg-ai-findings", hook_request("nobody"), content_type="application/json"
    )
    assert response.json() == {"cards": []}


def test_it_refuses_a_request_without_patient_id(service_account: Any) -> None:
    request = hook_request("x")
    del request["context"]["patientId"]
    response = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json")
    assert response.status_code == 400


def test_it_requires_a_credential(anonymous: Any) -> None:
    response = anonymous.post("/cds-services/ecg-ai-findings", hook_request("x"), content_type="application/json")
    assert response.status_code == 401
