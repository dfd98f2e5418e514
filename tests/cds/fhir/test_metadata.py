"""The CapabilityStatement and the official spec example."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from cds.ecg.models import EcgRecording

FIXTURES = Path(__file__).parent / "fixtures"


def test_it_serves_a_valid_r4_capability_statement(client: Any) -> None:
    response = client.get("/fhir/metadata")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/fhir+json")
    body = response.json()
    CapabilityStatement.model_validate(body)
    assert body["fhirVersion"] == "4.0.1"
    resources = {r["type"]: r for r in body["rest"][0]["resource"]}
    assert set(resources) == {
        "Patient",
        "Observation",
        "DocumentReference",
        "DiagnosticReport",
        "Task",
        "Device",
        "Provenance",
    }
    assert {i["code"] for i in resources["Task"]["interaction"]} == {"read", "vread", "search-type"}
    assert {i["code"] for i in resources["Observation"]["interaction"]} == {
        "create",
        "read",
        "vread",
        "update",
        "search-type",
    }
    assert {p["name"] for p in resources["Observation"]["searchParam"]} >= {"patient", "identifier", "code", "date"}
    assert {i["code"] for i in body["rest"][0]["interaction"]} == {"transaction", "batch"}
    # Issue 18: the ECG codes and document formats accepted are stated where clients look.
    for code in ("11524-6", "34534-8", "131328"):
        assert code in resources["Observation"]["documentation"]
    for content_type in ("application/dicom", "text/xml", "AnnotatedECG", "RestingECG", "restingecgdata"):
        assert content_type in resources["DocumentReference"]["documentation"]


@pytest.mark.django_db
def test_it_decodes_the_official_ekg_example_and_explains_why_it_is_refused(service_account: Any) -> None:
    """The spec's Observation/ekg: 3 leads at 100 Hz, no unit, origin 2048, factor 1.612, 1.16 s long.

    It parses and decodes (unit assumed µV, limits honoured); it is refused only because 1.16 s is
    below the 2.5 s minimum and its subject is not on this server — with an OperationOutcome, not
    a crash.
    """
    example = json.loads((FIXTURES / "observation-example-ekg.json").read_text())
    response = service_account.post("/fhir/Observation", example)
    assert response.status_code == 422, response.content
    issue = response.json()["issue"][0]
    assert "1.16 s" in issue["diagnostics"]
    assert EcgRecording.objects.count() == 0


@pytest.mark.django_db
def test_it_accepts_the_ekg_example_extended_to_ten_seconds(service_account: Any) -> None:
    """The same example with its samples repeated to 10.44 s and no foreign subject is stored."""
    example = json.loads((FIXTURES / "observation-example-ekg.json").read_text())
    del example["subject"]
    for component in example["component"]:
        component["valueSampledData"]["data"] = " ".join([component["valueSampledData"]["data"]] * 9)
    response = service_account.post("/fhir/Observation", example)
    assert response.status_code == 201, response.content
    recording = EcgRecording.objects.get()
    # Code 131389 is lead III by code (the table), whatever the display says.
    assert recording.leads == ["I", "II", "III"] and recording.sample_rate_hz == 100
    assert recording.quality["unit_assumed"] is True
    first = 2048 + 1.612 * 2041
    assert abs(float(recording.waveform()[0, 0]) - first) < 1e-2
