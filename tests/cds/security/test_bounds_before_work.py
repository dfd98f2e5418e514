"""Bounds checked before the costly work (issue 13, item 8): who may make us read a body, how big a
single resource may be, and how many samples we split and convert.

Each test would fail on the code before this change: the NUL scan parsed suspect bodies before
authentication (400 to anyone), a single resource could be 32 MiB, and SampledData was split and
converted before its length was known.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from cds.analysis.models import AnalysisJob
from cds.ecg.models import EcgRecording
from cds.fhir.models import StoredResource
from tests.cds.fhir.test_bad_input import assert_outcome

pytestmark = pytest.mark.django_db

NUL_PATIENT = {"resourceType": "Patient", "identifier": [{"system": "urn:x", "value": "a\x00b"}]}


@pytest.mark.parametrize("path", ["/fhir/Patient", "/fhir"])
def test_a_nul_body_without_credentials_is_401_not_scanned(anonymous: Any, path: str) -> None:
    body = NUL_PATIENT if path != "/fhir" else {"resourceType": "Bundle", "type": "batch", "entry": [NUL_PATIENT]}
    response = anonymous.post(path, body)
    assert response.status_code == 401, response.content


def test_a_nul_cds_hooks_body_without_credentials_is_401(anonymous: Any) -> None:
    body = {"hook": "patient-view", "hookInstance": "x", "context": {"patientId": "abc\x00"}}
    response = anonymous.post("/cds-services/ecg-ai-findings", body, content_type="application/json")
    assert response.status_code == 401, response.content


def test_the_nul_scan_never_parses_a_body_before_authentication(anonymous: Any, monkeypatch: Any) -> None:
    parsed: list[bytes] = []
    real_loads = json.loads

    def spying_loads(text: Any, *args: Any, **kwargs: Any) -> Any:
        parsed.append(text if isinstance(text, bytes) else str(text).encode())
        return real_loads(text, *args, **kwargs)

    monkeypatch.setattr(json, "loads", spying_loads)
    body = json.dumps(NUL_PATIENT).encode()
    assert anonymous.post("/fhir/Patient", body).status_code == 401
    assert body not in parsed


def test_a_single_resource_has_a_lower_body_limit_than_a_bundle(
    service_account: Any, ecg_factory: Any, settings: Any
) -> None:
    observation = ecg_factory(9)
    size = len(json.dumps(observation))
    settings.FHIR_MAX_RESOURCE_BYTES = size - 1
    settings.FHIR_MAX_BODY_BYTES = size * 2
    issue = assert_outcome(service_account.post("/fhir/Observation", observation), 413, "too-costly")
    assert f"limit of {size - 1} bytes" in issue["diagnostics"]
    assert StoredResource.objects.count() == 0
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"resource": observation, "request": {"method": "POST", "url": "Observation"}}],
    }
    response = service_account.post("/fhir", bundle)
    assert response.status_code == 200, response.content[:500]
    assert EcgRecording.objects.count() == 1


def test_the_default_resource_limit_is_below_the_bundle_limit_and_above_the_largest_ecg() -> None:
    from django.conf import settings

    largest_ecg = settings.ECG_MAX_SECONDS * settings.ECG_MAX_RATE_HZ * 12 * len("-12345 ")
    assert largest_ecg < settings.FHIR_MAX_RESOURCE_BYTES < settings.FHIR_MAX_BODY_BYTES


def test_too_many_data_values_are_refused_before_any_is_decoded(
    service_account: Any, ecg_factory: Any, settings: Any, monkeypatch: Any
) -> None:
    settings.ECG_MAX_SECONDS = 4.0  # 2,000 samples per lead at 1000 Hz; the sample has 5,000
    settings.ECG_MAX_RATE_HZ = 500.0

    def must_not_decode(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("SampledData was decoded before its length was checked")

    monkeypatch.setattr("cds.ecg.sampled_data.parse_data_string", must_not_decode)
    issue = assert_outcome(
        service_account.post("/fhir/Observation", ecg_factory(9)),
        400,
        "too-costly",
        "Observation.component[0].valueSampledData.data",
    )
    assert "at most 2000 per lead" in issue["diagnostics"]
    assert StoredResource.objects.count() == 0 and AnalysisJob.objects.count() == 0


def test_many_short_chunks_are_bounded_in_all(service_account: Any, ecg_factory: Any, settings: Any) -> None:
    settings.ECG_MAX_SECONDS = 1.0
    settings.ECG_MAX_RATE_HZ = 500.0  # 500 per lead, 6,000 in all
    observation = ecg_factory(9)
    chunk = observation["component"][0]
    chunk["valueSampledData"]["data"] = " ".join(["1"] * 500)
    observation["component"] = [json.loads(json.dumps(chunk)) for _ in range(13)]
    assert_outcome(
        service_account.post("/fhir/Observation", observation),
        400,
        "too-costly",
        "Observation.component[12].valueSampledData.data",
    )
    assert StoredResource.objects.count() == 0


def test_a_nul_body_with_credentials_is_still_refused_with_its_element(service_account: Any) -> None:
    assert_outcome(service_account.post("/fhir/Patient", NUL_PATIENT), 400, "invalid", "Patient.identifier[0].value")
