"""Every kind of bad input gets an OperationOutcome with the right status and element, and stores nothing."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from cds.analysis.models import AnalysisJob
from cds.ecg.models import EcgRecording, Patient
from cds.fhir.models import SearchIndexEntry, StoredResource

pytestmark = pytest.mark.django_db

Mutator = Callable[[dict[str, Any]], Any]


def assert_nothing_stored() -> None:
    assert StoredResource.objects.count() == 0
    assert SearchIndexEntry.objects.count() == 0
    assert EcgRecording.objects.count() == 0
    assert Patient.objects.count() == 0
    assert AnalysisJob.objects.count() == 0


def assert_outcome(response: Any, status: int, code: str, expression: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    issue = outcome["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == code, issue
    assert issue["diagnostics"]
    if expression is not None:
        assert expression in issue["expression"], issue
    return issue


def lead_data(obs: dict[str, Any], index: int = 0) -> dict[str, Any]:
    return obs["component"][index]["valueSampledData"]


def set_data(index: int, transform: Callable[[str], str]) -> Mutator:
    def mutate(obs: dict[str, Any]) -> None:
        lead_data(obs, index)["data"] = transform(lead_data(obs, index)["data"])

    return mutate


def r5_sampled_data(obs: dict[str, Any]) -> None:
    sampled = lead_data(obs)
    sampled["interval"] = sampled.pop("period")
    sampled["intervalUnit"] = "ms"


def drop_lead_code(obs: dict[str, Any]) -> None:
    obs["component"][2]["code"] = {"text": "lead III"}


def unknown_lead_code(obs: dict[str, Any]) -> None:
    obs["component"][1]["code"]["coding"][0]["code"] = "131337"


def every_lead(transform: Callable[[dict[str, Any]], None]) -> Mutator:
    def mutate(obs: dict[str, Any]) -> None:
        for component in obs["component"]:
            transform(component["valueSampledData"])

    return mutate


def keep_samples(n: int) -> Callable[[dict[str, Any]], None]:
    def transform(sampled: dict[str, Any]) -> None:
        sampled["data"] = " ".join(sampled["data"].split(" ")[:n])

    return transform


def repeat_samples(times: int) -> Callable[[dict[str, Any]], None]:
    def transform(sampled: dict[str, Any]) -> None:
        sampled["data"] = " ".join([sampled["data"]] * times)

    return transform


def set_factor(factor: float) -> Callable[[dict[str, Any]], None]:
    def transform(sampled: dict[str, Any]) -> None:
        sampled["factor"] = factor

    return transform


def set_period(period: float) -> Callable[[dict[str, Any]], None]:
    def transform(sampled: dict[str, Any]) -> None:
        sampled["period"] = period

    return transform


def unresolved_subject(obs: dict[str, Any]) -> None:
    obs["subject"] = {"reference": "Patient/does-not-exist"}


def not_an_ecg(obs: dict[str, Any]) -> None:
    obs["code"] = {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}


C0 = "Observation.component[0].valueSampledData"
CASES: list[tuple[str, Mutator, int, str, str]] = [
    ("r5_sampled_data", r5_sampled_data, 400, "structure", f"{C0}.interval"),
    ("missing_lead_code", drop_lead_code, 422, "required", "Observation.component[2].code"),
    ("unknown_lead_code", unknown_lead_code, 422, "code-invalid", "Observation.component[1].code.coding[0].code"),
    ("non_numeric_data", set_data(0, lambda d: d.replace(" ", " abc ", 1)), 400, "value", f"{C0}.data"),
    ("truncated_token", set_data(0, lambda d: d + " -"), 400, "value", f"{C0}.data"),
    ("nan_in_data", set_data(0, lambda d: d.replace(" ", " NaN ", 1)), 400, "value", f"{C0}.data"),
    ("infinity_in_data", set_data(0, lambda d: d.replace(" ", " 1e400 ", 1)), 400, "value", f"{C0}.data"),
    ("double_space", set_data(0, lambda d: d.replace(" ", "  ", 1)), 400, "value", f"{C0}.data"),
    ("one_lead_longer", set_data(0, lambda d: d + " 1"), 422, "value", f"{C0}.data"),
    (
        "lengths_disagree",
        set_data(3, lambda d: d.rsplit(" ", 10)[0]),
        422,
        "value",
        "Observation.component[3].valueSampledData.data",
    ),
    ("too_short", every_lead(keep_samples(1200)), 422, "value", f"{C0}.data"),
    ("too_long", every_lead(repeat_samples(7)), 422, "value", f"{C0}.data"),
    ("beyond_20_mv", every_lead(set_factor(50.0)), 422, "value", ".valueSampledData.data"),
    ("rate_too_low", every_lead(set_period(20.0)), 422, "value", f"{C0}.period"),
    ("unresolved_subject", unresolved_subject, 422, "not-found", "Observation.subject"),
    ("not_an_ecg", not_an_ecg, 422, "not-supported", "Observation.code"),
]


@pytest.mark.parametrize(("name", "mutate", "status", "code", "expression"), CASES, ids=[c[0] for c in CASES])
def test_it_refuses_bad_ecg_and_stores_nothing(
    service_account: Any, ecg_factory: Any, name: str, mutate: Mutator, status: int, code: str, expression: str
) -> None:
    observation = ecg_factory(9)
    mutate(observation)
    response = service_account.post("/fhir/Observation", observation)
    issue = assert_outcome(response, status, code)
    assert any(expression in e for e in issue["expression"]), issue
    assert_nothing_stored()


def test_it_refuses_dimensions_that_do_not_divide_the_data(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(9)
    sampled = lead_data(observation)
    sampled["dimensions"] = 3
    sampled["data"] = sampled["data"] + " 1 2"  # 5002 values: not a multiple of 3
    response = service_account.post("/fhir/Observation", observation)
    assert_outcome(response, 400, "value", f"{C0}.dimensions")
    assert_nothing_stored()


def test_it_refuses_malformed_json(service_account: Any) -> None:
    assert_outcome(service_account.post("/fhir/Observation", '{"resourceType": "Observation", '), 400, "structure")
    assert_nothing_stored()


def test_it_refuses_a_truncated_body(service_account: Any, ecg_factory: Any) -> None:
    body = json.dumps(ecg_factory(9))
    assert_outcome(service_account.post("/fhir/Observation", body[: len(body) // 2]), 400, "structure")
    assert_nothing_stored()


def test_it_refuses_nan_json_literals(service_account: Any, ecg_factory: Any) -> None:
    body = json.dumps(ecg_factory(9)).replace('"factor": 1.0', '"factor": NaN', 1)
    assert '"factor": NaN' in body
    assert_outcome(service_account.post("/fhir/Observation", body), 400, "value")
    assert_nothing_stored()


def test_it_refuses_a_body_that_is_not_an_object(service_account: Any) -> None:
    assert_outcome(service_account.post("/fhir/Observation", "[1, 2]"), 400, "structure")


def test_it_refuses_a_wrong_resource_type(service_account: Any, patient_resource: dict[str, Any]) -> None:
    assert_outcome(service_account.post("/fhir/Observation", patient_resource), 400, "invalid", "resourceType")
    assert_nothing_stored()


def test_it_refuses_a_missing_resource_type(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(9)
    del observation["resourceType"]
    assert_outcome(service_account.post("/fhir/Observation", observation), 400, "required", "resourceType")
    assert_nothing_stored()


def test_it_refuses_an_unknown_element(service_account: Any, ecg_factory: Any) -> None:
    observation = ecg_factory(9)
    observation["component"][4]["colour"] = "red"
    assert_outcome(
        service_account.post("/fhir/Observation", observation), 400, "structure", "Observation.component[4].colour"
    )


def test_it_refuses_an_unsupported_media_type(service_account: Any, ecg_factory: Any) -> None:
    response = service_account.post("/fhir/Observation", json.dumps(ecg_factory(9)), content_type="text/plain")
    assert_outcome(response, 415, "not-supported")
    assert_nothing_stored()


def test_it_refuses_a_body_above_the_limit(service_account: Any, ecg_factory: Any) -> None:
    with override_settings(FHIR_MAX_RESOURCE_BYTES=100_000):  # one resource; Bundles: FHIR_MAX_BODY_BYTES
        response = service_account.post("/fhir/Observation", ecg_factory(9))
    assert_outcome(response, 413, "too-costly")
    assert_nothing_stored()


def test_it_refuses_xml_format(service_account: Any) -> None:
    assert_outcome(service_account.get("/fhir/Patient?_format=xml"), 406, "not-supported", "_format")


def test_it_refuses_an_unknown_search_parameter_by_default(service_account: Any) -> None:
    assert_outcome(service_account.get("/fhir/Observation?colour=red"), 400, "not-supported", "colour")
    response = service_account.get("/fhir/Observation?colour=red", HTTP_PREFER="handling=strict")
    assert_outcome(response, 400, "not-supported", "colour")


def test_it_ignores_an_unknown_search_parameter_leniently_and_says_so(service_account: Any) -> None:
    response = service_account.get("/fhir/Observation?colour=red", HTTP_PREFER="handling=lenient")
    assert response.status_code == 200
    bundle = response.json()
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    assert outcome["resource"]["issue"][0]["expression"] == ["colour"]
    assert "colour" not in bundle["link"][0]["url"]


def test_it_refuses_an_unknown_resource_type(service_account: Any) -> None:
    assert_outcome(service_account.get("/fhir/Medication"), 404, "not-supported")


def test_it_refuses_requests_without_a_credential(anonymous: Any, ecg_factory: Any) -> None:
    response = anonymous.post("/fhir/Observation", ecg_factory(9))
    assert_outcome(response, 401, "login")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert_outcome(anonymous.get("/fhir/Observation"), 401, "login")
    assert_nothing_stored()


def test_it_refuses_writes_outside_the_token_scope(read_only_client: Any, ecg_factory: Any) -> None:
    assert_outcome(read_only_client.post("/fhir/Observation", ecg_factory(9)), 403, "forbidden")
    assert_nothing_stored()


def test_it_refuses_a_bad_birth_date(service_account: Any, patient_resource: dict[str, Any]) -> None:
    patient = copy.deepcopy(patient_resource)
    patient["birthDate"] = "1968-13-45"
    assert_outcome(service_account.post("/fhir/Patient", patient), 400, "value", "Patient.birthDate")
    assert_nothing_stored()
