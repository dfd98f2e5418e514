"""Property tests of the FHIR parser: arbitrary JSON and mutated ECGs at ``POST /fhir/Observation`` and ``POST /fhir``.

For every input: never a 5xx; a 4xx is an OperationOutcome whose issues each carry severity, code
and diagnostics, and an ``expression`` whenever the body is a strict-JSON object (an element can be
named: bodies with NaN/Infinity literals or that are not objects are refused at parse time, with
no element to name); and a refused request stores nothing. Bounded and deterministic by default (well under a
minute); ``FUZZ_EXAMPLES=5000`` runs a longer random campaign by hand.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.fhir.models import StoredResource
from tests.fuzz.strategies import FHIRISH_OBJECTS, JSON_VALUES, fuzz_settings, mutated, small_bundle, small_ecg

pytestmark = pytest.mark.django_db

CRASH_DIR = os.environ.get("FUZZ_CRASH_DIR", "")  # e.g. FUZZ_EXAMPLES=5000 FUZZ_CRASH_DIR=var/fuzz pytest tests/fuzz
ECG = small_ecg()
BUNDLE = small_bundle()


def assert_refused_or_accepted(response: Any, *, text: str, body_is_object: bool, stored_before: int) -> None:
    """Check the contract of one answer (see the module docstring)."""
    if response.status_code >= 500 and CRASH_DIR:
        # Bodies are too large for hypothesis' report: keep each crasher as a file to replay with curl.
        Path(CRASH_DIR).mkdir(parents=True, exist_ok=True)
        (Path(CRASH_DIR) / f"crash-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json").write_text(text)
    assert response.status_code < 500, response.content[:2000]
    if response.status_code < 400:
        return
    assert response["Content-Type"].startswith("application/fhir+json"), response["Content-Type"]
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome", outcome
    assert outcome["issue"], outcome
    for issue in outcome["issue"]:
        assert issue["severity"] in {"error", "fatal"} and issue["code"] and issue["diagnostics"], issue
        if body_is_object:
            assert issue.get("expression"), outcome
    assert StoredResource.objects.count() == stored_before, "a refused request stored something"


def post(service_account: Any, path: str, text: str) -> Any:
    return service_account.post(path, text)


def _no_constants(name: str) -> Any:
    raise ValueError(name)


def is_strict_json_object(text: str) -> bool:
    """Return whether ``text`` is a JSON object without NaN/Infinity literals (the parser's own rule)."""
    try:
        return isinstance(json.loads(text, parse_constant=_no_constants), dict)
    except ValueError:
        return False


@settings(**fuzz_settings(120))
@given(body=st.one_of(JSON_VALUES, FHIRISH_OBJECTS), path=st.sampled_from(["/fhir/Observation", "/fhir"]))
def test_it_answers_arbitrary_json_with_an_outcome_never_a_5xx(service_account: Any, body: Any, path: str) -> None:
    before = StoredResource.objects.count()
    text = json.dumps(body)
    response = post(service_account, path, text)
    assert_refused_or_accepted(response, text=text, body_is_object=isinstance(body, dict), stored_before=before)


@settings(**fuzz_settings(120))
@given(case=mutated(ECG))
def test_it_answers_mutated_ecg_observations_with_an_outcome_never_a_5xx(service_account: Any, case: str) -> None:
    text = case
    before = StoredResource.objects.count()
    response = post(service_account, "/fhir/Observation", text)
    assert_refused_or_accepted(response, text=text, body_is_object=is_strict_json_object(text), stored_before=before)


@settings(**fuzz_settings(80))
@given(case=mutated(BUNDLE))
def test_it_answers_mutated_transaction_bundles_with_an_outcome_never_a_5xx(service_account: Any, case: str) -> None:
    text = case
    before = StoredResource.objects.count()
    response = post(service_account, "/fhir", text)
    assert_refused_or_accepted(response, text=text, body_is_object=is_strict_json_object(text), stored_before=before)
    if response.status_code == 200:
        # A transaction is all or nothing: every entry answered 201 or 200 (an ifNoneExist match).
        statuses = [entry["response"]["status"] for entry in response.json()["entry"]]
        assert all(s.startswith(("200", "201")) for s in statuses), statuses


def test_it_accepts_the_unmutated_inputs(service_account: Any) -> None:
    # The mutations start from valid resources: otherwise the properties above would prove little.
    assert post(service_account, "/fhir/Observation", json.dumps(ECG)).status_code == 201
    assert post(service_account, "/fhir", json.dumps(BUNDLE)).status_code == 200


@pytest.mark.parametrize("path", ["/fhir/Observation", "/fhir"])
def test_it_refuses_json_nested_deeper_than_the_parser_recurses(service_account: Any, path: str) -> None:
    deep = '{"resourceType": "Observation", "code": ' + "[" * 100_000 + "]" * 100_000 + "}"
    response = post(service_account, path, deep)
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("bundle_type", [[], {"a": 1}])
def test_it_refuses_an_unhashable_bundle_type(service_account: Any, bundle_type: Any) -> None:
    response = post(service_account, "/fhir", json.dumps({"resourceType": "Bundle", "type": bundle_type}))
    assert response.status_code == 422, response.content


@pytest.mark.parametrize(
    "request_value", [5, "POST Patient", ["POST"], {"method": "POST", "url": "Patient", "ifNoneExist": 5}]
)
def test_it_refuses_a_malformed_entry_request(service_account: Any, request_value: Any) -> None:
    bundle = json.loads(json.dumps(BUNDLE))
    bundle["entry"][0]["request"] = request_value
    response = post(service_account, "/fhir", json.dumps(bundle))
    assert response.status_code == 400, response.content


@pytest.mark.parametrize(
    ("element", "value"),
    [("period", 10**400), ("factor", 10**400), ("origin", 10**400), ("factor", None), ("origin", None)],
    ids=[
        "period-huge",
        "factor-huge",
        "origin-huge",
        "factor-null",
        "origin-null",
    ],  # period null: the FHIR model refuses it
)
def test_it_refuses_a_sampled_data_number_beyond_float_range_or_null(
    service_account: Any, element: str, value: Any
) -> None:
    observation = json.loads(json.dumps(ECG))
    sampled = observation["component"][0]["valueSampledData"]
    if element == "origin":
        sampled["origin"]["value"] = value
    else:
        sampled[element] = value
    response = post(service_account, "/fhir/Observation", json.dumps(observation))
    assert response.status_code == 400, response.content


@pytest.mark.parametrize("full_url", [["urn:uuid:8f2ff3e4-86e7-46ad-ae5c-fcd5e6f56bb9"], {"a": 1}])
def test_it_refuses_an_unhashable_full_url(service_account: Any, full_url: Any) -> None:
    assert post(service_account, "/fhir", json.dumps(BUNDLE)).status_code == 200
    bundle = json.loads(json.dumps(BUNDLE))
    bundle["entry"][0]["fullUrl"] = full_url
    response = post(service_account, "/fhir", json.dumps(bundle))
    assert response.status_code == 400, response.content
