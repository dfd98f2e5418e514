"""The interpretation in the write-back set: measurements (LOINC), ST per lead, findings (SNOMED), report, Task."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from cds.analysis.fhir_results import result_entries, transaction_bundle
from cds.analysis.interpretation import DATA_ABSENT_REASON_SYSTEM
from inference.analysis_result import AnalysisResult
from tests.cds.factories import flagged_clinical, make_measurements, make_result, normal_clinical, with_interpretation

ECG = {"reference": "http://cds.example/fhir/Observation/1", "identifier": {"system": "urn:ecg", "value": "e-1"}}
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"


def resources(result: AnalysisResult) -> list[dict[str, Any]]:
    entries = result_entries(result, job_key="job-5", ecg=ECG, patient=None, issued="2024-01-01T00:00:00Z")
    return [entry.resource for entry in entries]


def by_loinc(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {
        r["code"]["coding"][0]["code"]: r
        for r in items
        if r["resourceType"] == "Observation" and r["code"]["coding"][0]["system"] == LOINC
    }


def only(items: list[dict[str, Any]], resource_type: str) -> dict[str, Any]:
    (found,) = [r for r in items if r["resourceType"] == resource_type]
    return found


def test_it_codes_each_measurement_in_loinc_with_ucum_units() -> None:
    items = resources(with_interpretation(make_result(score=2.5), flagged_clinical()))
    measured = by_loinc(items)
    expected = {
        "8867-4": (72.0, "/min"),
        "8625-6": (164.0, "ms"),
        "8633-0": (92.0, "ms"),
        "8634-8": (384.0, "ms"),
        "8636-3": (402.0, "ms"),
        "8626-4": (55.0, "deg"),
        "8632-2": (40.0, "deg"),
        "8638-9": (35.0, "deg"),
    }
    assert {code: (o["valueQuantity"]["value"], o["valueQuantity"]["code"]) for code, o in measured.items()} == expected
    for observation in measured.values():
        assert observation["status"] == "preliminary" and observation["derivedFrom"][0] == ECG
        assert observation["category"][0]["coding"][0]["code"] == "procedure"
        assert observation["meta"]["security"][0]["code"] == "AIAST"
        assert observation["valueQuantity"]["system"] == "http://unitsofmeasure.org"
    assert "Fridericia" in measured["8636-3"]["note"][0]["text"]


def test_it_gives_a_not_measured_value_a_data_absent_reason_and_never_a_value() -> None:
    measurements = make_measurements(pr_ms=None, not_measured={"pr_ms": "no P wave before most QRS complexes"})
    items = resources(with_interpretation(make_result(score=2.5), flagged_clinical(), measurements))
    pr = by_loinc(items)["8625-6"]
    assert "valueQuantity" not in pr
    assert pr["dataAbsentReason"]["coding"][0]["system"] == DATA_ABSENT_REASON_SYSTEM
    assert pr["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert "no P wave before most QRS complexes" in pr["note"][0]["text"]
    noisy = make_measurements(qt_ms=None, not_measured={"qt_ms": "T wave end lost in noise"})
    qt = by_loinc(resources(with_interpretation(make_result(score=2.5), flagged_clinical(), noisy)))["8634-8"]
    assert qt["dataAbsentReason"]["coding"][0]["code"] == "error"


def test_it_reports_st_deviation_at_j60_per_lead_in_components() -> None:
    items = resources(with_interpretation(make_result(score=2.5), flagged_clinical()))
    (st,) = [
        r for r in items if r["resourceType"] == "Observation" and r["code"]["coding"][0]["code"] == "st-deviation-j60"
    ]
    components = {c["code"]["coding"][0]["display"]: c for c in st["component"]}
    assert len(components) == 12
    assert components["Lead I"]["valueQuantity"] == {
        "value": -0.1,
        "unit": "mV",
        "system": "http://unitsofmeasure.org",
        "code": "mV",
    }
    assert components["Lead V1"]["code"]["coding"][0]["system"] == "urn:iso:std:iso:11073:10101"
    assert (
        "valueQuantity" not in components["Lead V6"]
        and "flat line" in components["Lead V6"]["dataAbsentReason"]["text"]
    )


def test_it_codes_findings_in_snomed_with_evidence_and_the_measurements_they_rest_on() -> None:
    result = with_interpretation(make_result(score=2.5), flagged_clinical())
    entries = result_entries(result, job_key="job-5", ecg=ECG, patient=None, issued="2024-01-01T00:00:00Z")
    urls = {e.role: e.full_url for e in entries}
    findings = {e.resource["code"]["coding"][-1]["code"]: e.resource for e in entries if e.role.startswith("finding-")}
    rbbb = findings["CRBBB"]
    assert rbbb["code"]["coding"][0] == {
        "system": SNOMED,
        "code": "713427006",
        "display": "Complete right bundle branch block",
    }
    assert rbbb["valueBoolean"] is True and rbbb["interpretation"][0]["coding"][0]["code"] == "A"
    assert "qrs ms 132" in rbbb["note"][0]["text"] and "measured" in rbbb["note"][0]["text"]
    assert {"reference": urls["measurement-qrs_ms"]} in rbbb["derivedFrom"]
    model_only = findings["ISC_"]
    assert [c["system"] for c in model_only["code"]["coding"]] == ["urn:ecg-cds:CodeSystem:ecg-ai"]
    assert model_only["derivedFrom"] == [ECG]  # a model's statement rests on no measurement


def test_it_concludes_with_the_grounded_report_and_its_snomed_codes() -> None:
    clinical = flagged_clinical()
    items = resources(with_interpretation(make_result(score=2.5), clinical))
    report = only(items, "DiagnosticReport")
    assert report["conclusion"] == clinical.text and "anteroseptal" not in report["conclusion"]
    assert base64.b64decode(report["presentedForm"][0]["data"]).decode() == clinical.text
    assert [c["coding"][0]["code"] for c in report["conclusionCode"]] == ["426783006", "713427006"]
    observations = [r for r in items if r["resourceType"] == "Observation"]
    assert len(report["result"]) == len(observations) == 1 + 2 + 8 + 1 + 3  # score, intervals, LOINC, ST, findings


@pytest.mark.parametrize(
    ("clinical", "score", "flag", "task_priority"),
    [
        (flagged_clinical(urgent=True), 0.4, "A", "urgent"),  # below the operating point, yet urgent AF
        (flagged_clinical(), 0.4, "A", "routine"),
        (normal_clinical(), 3.0, "N", None),  # far above the operating point, yet a normal verdict
    ],
    ids=["urgent", "flagged", "normal"],
)
def test_it_shows_the_one_verdict_in_the_score_report_and_task(
    clinical: Any, score: float, flag: str, task_priority: str | None
) -> None:
    items = resources(with_interpretation(make_result(score=score), clinical))
    score_observation = next(
        r for r in items if r.get("code", {}).get("coding", [{}])[0].get("code") == "anomaly-score"
    )
    assert score_observation["interpretation"][0]["coding"][0]["code"] == flag
    assert score_observation["valueQuantity"]["value"] == score  # the detector's score is kept
    verdict = next(c for c in score_observation["component"] if c["code"]["coding"][0]["code"] == "verdict")
    assert verdict["valueCodeableConcept"]["coding"][0]["code"] == clinical.verdict
    tasks = [r for r in items if r["resourceType"] == "Task"]
    assert [t["priority"] for t in tasks] == ([task_priority] if task_priority else [])


def test_it_no_longer_derives_task_priority_from_the_score() -> None:
    tasks = [r for r in resources(make_result(score=5.0)) if r["resourceType"] == "Task"]
    assert [t["priority"] for t in tasks] == ["routine"]


def test_it_builds_a_valid_r4b_bundle_with_the_interpretation() -> None:
    measurements = make_measurements(pr_ms=None, not_measured={"pr_ms": "atrial fibrillation: no P waves"})
    result = with_interpretation(make_result(score=2.5), flagged_clinical(urgent=True), measurements)
    bundle = transaction_bundle(
        result_entries(result, job_key="job-9", ecg=ECG, patient=None, issued="2024-01-01T00:00:00Z")
    )
    Bundle.model_validate(bundle)
    device = bundle["entry"][0]["resource"]
    assert [v["value"] for v in device["version"]] == ["1.0.0", "1.0.0", "measure-1.1"]
