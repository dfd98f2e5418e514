"""CDS Hooks 2.0 feedback: cards offer override reasons; feedback is stored per card, tenant-safe, idempotent."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.core.management import call_command
from django.test import Client

from cds.analysis.models import AnalysisJob, Prediction
from cds.hooks.feedback import OVERRIDE_REASON_SYSTEM
from cds.pipeline.analysis import analysis_results_store
from cds.review.models import CardFeedback, IssuedCard
from inference.results import DETECTOR_NAME
from tests.cds.analysis.test_results_store import make_result
from tests.cds.hooks.conftest import SERVICE_URL
from tests.conftest import OTHER_ORGANIZATION, FhirTestClient, api_client_token

pytestmark = pytest.mark.django_db

FEEDBACK_URL = "/cds-services/ecg-ai-findings/feedback"


@pytest.fixture
def cards(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> list[dict[str, Any]]:
    """Two analysed ECGs of one patient and the cards the hook returns for them (flagged first)."""
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    for ecg_id, score, date in ((63, 2.5, "2024-03-01T10:00:00Z"), (9, 0.3, "2024-01-01T10:00:00Z")):
        obs = ecg_factory(ecg_id, patient_reference=f"Patient/{patient_id}", effective=date)
        observation_id = service_account.post("/fhir/Observation", obs).json()["id"]
        job = AnalysisJob.objects.get(recording__logical_id=observation_id)
        analysis_results_store(job=job, result=make_result(score=score))
    request = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"userId": "Practitioner/1", "patientId": patient_id},
    }
    response = service_account.post("/cds-services/ecg-ai-findings", request, content_type="application/json")
    assert response.status_code == 200, response.content
    return list(response.json()["cards"])


def post(client: FhirTestClient, body: Any) -> Any:
    return client.post(FEEDBACK_URL, body, content_type="application/json")


def overridden(card: str, code: str = "finding-absent", comment: str = "", at: str = "2024-03-02T09:00:00Z") -> dict:
    reason: dict[str, Any] = {"reason": {"system": OVERRIDE_REASON_SYSTEM, "code": code}}
    if comment:
        reason["userComment"] = comment
    return {"card": card, "outcome": "overridden", "overrideReason": reason, "outcomeTimestamp": at}


def test_cards_offer_override_reasons_in_our_code_system(cards: list[dict[str, Any]]) -> None:
    reasons = cards[0]["overrideReasons"]
    assert {r["code"] for r in reasons} >= {"finding-absent", "poor-quality", "already-known", "not-relevant"}
    assert all(r["system"] == OVERRIDE_REASON_SYSTEM and r["display"] for r in reasons)


def test_feedback_is_stored_against_the_prediction_the_card_was_made_from(
    service_account: Any, cards: list[dict[str, Any]]
) -> None:
    flagged, normal = cards
    body = {
        "feedback": [
            overridden(flagged["uuid"], "poor-quality", comment="baseline wander in V1-V3"),
            {"card": normal["uuid"], "outcome": "accepted", "outcomeTimestamp": "2024-03-02T09:05:00+00:00"},
        ]
    }
    response = post(service_account, body)

    assert response.status_code == 200, response.content
    assert response.json() == {}
    rows = {row.outcome: row for row in CardFeedback.objects.select_related("card__prediction")}
    assert set(rows) == {"overridden", "accepted"}
    row = rows["overridden"]
    # The flagged card is the detector prediction with the high score (2.5), resolved by the stored mapping.
    assert row.card.prediction.model_name == DETECTOR_NAME
    assert row.card.prediction.score == pytest.approx(2.5)
    assert (row.reason_code, row.reason_display) == ("poor-quality", "Artefact / poor signal quality")
    assert row.comment == "baseline wander in V1-V3"
    assert row.client_id and row.organization.slug == "org-a"
    assert row.outcome_at.isoformat() == "2024-03-02T09:00:00+00:00"
    assert LogEntry.objects.get_for_model(CardFeedback).count() == 2  # django-auditlog saw both writes


def test_the_same_feedback_twice_is_stored_once(service_account: Any, cards: list[dict[str, Any]]) -> None:
    body = {"feedback": [overridden(cards[0]["uuid"])]}
    assert post(service_account, body).status_code == 200
    assert post(service_account, body).status_code == 200
    assert CardFeedback.objects.count() == 1
    # A later action on the same card is a new fact.
    assert (
        post(service_account, {"feedback": [overridden(cards[0]["uuid"], at="2024-03-03T09:00:00Z")]}).status_code
        == 200
    )
    assert CardFeedback.objects.count() == 2


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "feedback"),
        ({"feedback": []}, "feedback"),
        ({"feedback": ["x"]}, "feedback[0]"),
        ({"feedback": [{"card": "not-a-uuid", "outcome": "accepted", "outcomeTimestamp": "2024-03-02T09:00:00Z"}]},
         "feedback[0].card"),
        ({"feedback": [{"card": "{card}", "outcome": "liked", "outcomeTimestamp": "2024-03-02T09:00:00Z"}]},
         "feedback[0].outcome"),
        ({"feedback": [{"card": "{card}", "outcome": "accepted", "outcomeTimestamp": "yesterday"}]},
         "feedback[0].outcomeTimestamp"),
        ({"feedback": [{"card": "{card}", "outcome": "accepted", "outcomeTimestamp": "2024-03-02T09:00:00"}]},
         "feedback[0].outcomeTimestamp"),
        ({"feedback": [{"card": "{card}", "outcome": "accepted", "acceptedSuggestions": [{"x": 1}],
                        "outcomeTimestamp": "2024-03-02T09:00:00Z"}]}, "feedback[0].acceptedSuggestions"),
        ({"feedback": ["{ok}", overridden("{card}", code="made-up")]}, "feedback[1].overrideReason.reason"),
        ({"feedback": [{"card": "{card}", "outcome": "accepted", "overrideReason": {"userComment": "x"},
                        "outcomeTimestamp": "2024-03-02T09:00:00Z"}]}, "feedback[0].overrideReason"),
    ],
)  # fmt: skip
def test_a_malformed_body_is_refused_naming_the_field_and_nothing_is_stored(
    service_account: Any, cards: list[dict[str, Any]], body: dict[str, Any], field: str
) -> None:
    text = json.dumps(body).replace('"{ok}"', json.dumps(overridden(cards[1]["uuid"])))
    response = post(service_account, json.loads(text.replace("{card}", cards[0]["uuid"])))

    assert response.status_code == 400, response.content
    assert response.json()["extra"]["field"] == field
    assert response.json()["message"].startswith(field)
    assert CardFeedback.objects.count() == 0


def test_an_unknown_card_is_404_and_stores_nothing_of_the_batch(
    service_account: Any, cards: list[dict[str, Any]]
) -> None:
    body = {"feedback": [overridden(cards[0]["uuid"]), overridden("0b1c9d1e-0000-4000-8000-000000000000")]}
    response = post(service_account, body)
    assert response.status_code == 404
    assert response.json()["extra"]["field"] == "feedback[1].card"
    assert CardFeedback.objects.count() == 0


def test_another_organisations_client_cannot_give_feedback_on_our_card(cards: list[dict[str, Any]]) -> None:
    other = FhirTestClient(Client(), api_client_token(Client(), "system/*.cruds", organization=OTHER_ORGANIZATION))
    response = post(other, {"feedback": [overridden(cards[0]["uuid"])]})
    assert response.status_code == 404
    assert CardFeedback.objects.count() == 0
    assert IssuedCard.objects.filter(uuid=cards[0]["uuid"], organization__slug="org-a").exists()


def test_a_cds_client_gives_feedback_with_a_jwt_for_the_service_or_its_feedback_url(
    client: Any, make_ehr: Any, cards: list[dict[str, Any]]
) -> None:
    ehr = make_ehr()  # a registered CDS client of the cards' organisation (CDS Hooks 2.0 trust)

    def send(token: str, card: dict[str, Any]) -> Any:
        body = json.dumps({"feedback": [overridden(card["uuid"])]})
        return client.post(FEEDBACK_URL, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")

    # aud is "the CDS Service endpoint": a JWT for the service call is valid for its feedback, as is
    # one naming the feedback URL; any other URL is refused, naming both.
    refused = send(ehr.token(claims={"aud": "https://elsewhere.example/cds-services/x"}), cards[0])
    assert refused.status_code == 401, refused.content
    assert refused.json()["detail"] == f"JWT aud must be {SERVICE_URL}/feedback or {SERVICE_URL}"
    assert send(ehr.token(), cards[0]).status_code == 200
    assert send(ehr.token(claims={"aud": f"{SERVICE_URL}/feedback"}), cards[1]).status_code == 200
    assert {row.client_id for row in CardFeedback.objects.all()} == {f"cds-client:{ehr.iss}"}
    assert CardFeedback.objects.count() == 2


def test_feedback_needs_a_credential(anonymous: Any) -> None:
    assert post(anonymous, {"feedback": []}).status_code == 401


def test_feedback_reaches_the_quality_report_per_model_version_and_site(
    service_account: Any, cards: list[dict[str, Any]]
) -> None:
    flagged, normal = cards
    body = {
        "feedback": [
            overridden(flagged["uuid"], "finding-absent", comment="no ST change", at="2024-03-02T09:00:00Z"),
            overridden(normal["uuid"], "finding-absent", at="2024-03-02T10:00:00Z"),
            {"card": normal["uuid"], "outcome": "accepted", "outcomeTimestamp": "2024-03-02T11:00:00Z"},
            overridden(flagged["uuid"], "already-known", comment="known LBBB", at="2024-03-02T12:00:00Z"),
        ]
    }
    assert post(service_account, body).status_code == 200
    out = io.StringIO()
    call_command("quality_report", "--json", "--resamples", "10", stdout=out)
    report = json.loads(out.getvalue())

    version = Prediction.objects.get(score=2.5).model_version
    site = report["feedback"][version]
    assert list(site) == ["org-a/" + (Prediction.objects.get(score=2.5).recording.received_from or "(unknown source)")]
    figures = next(iter(site.values()))
    assert (figures["n"], figures["accepted"], figures["overridden"]) == (4, 1, 3)
    assert figures["override_rate"] == pytest.approx(3 / 4)
    assert figures["reasons"] == [
        {"code": "finding-absent", "display": "Finding not present on the tracing", "n": 2},
        {"code": "already-known", "display": "Already known", "n": 1},
    ]
    assert [c["comment"] for c in figures["recent_comments"]] == ["known LBBB", "no ST change"]  # newest first
