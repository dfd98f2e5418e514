"""Strict search (issue 15): unknown parameters, modifiers and chains are refused unless the client
asks for lenient handling; the modifiers the CapabilityStatement claims work on the real store."""

from __future__ import annotations

from typing import Any

import pytest

from cds.analysis.models import AnalysisJob
from cds.fhir.models import StoredResource
from cds.fhir.searchparams import MODIFIERS, param_kind
from cds.fhir.services import fhir_resource_update
from cds.pipeline.analysis import analysis_results_store
from tests.cds.factories import make_result

pytestmark = pytest.mark.django_db


def ids(response: Any) -> list[str]:
    assert response.status_code == 200, response.content
    return [e["resource"]["id"] for e in response.json()["entry"] if e["search"]["mode"] == "match"]


@pytest.fixture
def analysed(service_account: Any, ecg_factory: Any) -> dict[str, Any]:
    """Two patients (one named), three ECGs, two analysed: one report signed (final), one preliminary."""
    named = {"resourceType": "Patient", "name": [{"family": "Müller-Lüdenscheidt", "given": ["Anna"]}]}
    patient_a = service_account.post("/fhir/Patient", named).json()["id"]
    patient_b = service_account.post("/fhir/Patient", {"resourceType": "Patient", "gender": "male"}).json()["id"]
    ecgs = []
    for key, patient in (("e1", patient_a), ("e2", patient_a), ("e3", patient_b)):
        observation = ecg_factory(9, identifier=key, patient_reference=f"Patient/{patient}")
        ecgs.append(service_account.post("/fhir/Observation", observation).json()["id"])
    for ecg in ecgs[:2]:
        job = AnalysisJob.objects.get(recording__logical_id=ecg)
        analysis_results_store(job=job, result=make_result(score=2.5))
    reports = list(StoredResource.objects.filter(resource_type="DiagnosticReport", is_current=True).order_by("pk"))
    final = reports[0]
    fhir_resource_update(
        resource_type="DiagnosticReport",
        logical_id=final.logical_id,
        content={**final.content, "status": "final"},
        source="test",
    )
    return {"patients": (patient_a, patient_b), "ecgs": ecgs, "final": final.logical_id, "reports": reports}


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ("foo=bar", "foo"),
        ("patient.identifier=urn:mrn|1", "patient.identifier"),
        ("code:below=http://loinc.org|11524", "code:below"),
        ("date:exact=2024", "date:exact"),
        ("_include=Observation:performer", "_include"),
        ("_revinclude=Task:focus", "_revinclude"),
        ("_summary=text", "_summary"),
        ("code:missing=maybe", "code:missing"),
    ],
)
def test_it_refuses_what_it_does_not_support_naming_it(service_account: Any, query: str, named: str) -> None:
    response = service_account.get(f"/fhir/Observation?{query}")
    assert response.status_code == 400, response.content
    issue = response.json()["issue"][0]
    assert issue["code"] == "not-supported" and issue["expression"] == [named]
    assert named.split(".")[0].split(":")[0] in issue["diagnostics"]


def test_lenient_handling_ignores_it_with_a_warning(service_account: Any, analysed: dict[str, Any]) -> None:
    response = service_account.get(
        "/fhir/Observation?patient.identifier=x&code:below=y&code=http://loinc.org|11524-6",
        HTTP_PREFER="handling=lenient",
    )
    bundle = response.json()
    assert response.status_code == 200 and bundle["total"] == 3  # the unsupported parts did not filter
    outcome = bundle["entry"][-1]
    assert outcome["search"]["mode"] == "outcome"
    issues = outcome["resource"]["issue"]
    assert [i["expression"] for i in issues] == [["patient.identifier"], ["code:below"]]
    assert {i["severity"] for i in issues} == {"warning"}
    assert all("patient.identifier" not in link["url"] for link in bundle["link"])


def test_not_excludes_the_value_and_keeps_resources_without_it(service_account: Any, analysed: dict[str, Any]) -> None:
    preliminary = {r.logical_id for r in analysed["reports"]} - {analysed["final"]}
    assert set(ids(service_account.get("/fhir/DiagnosticReport?status:not=final"))) == preliminary
    assert ids(service_account.get("/fhir/DiagnosticReport?status:not=preliminary")) == [analysed["final"]]
    patients = set(ids(service_account.get("/fhir/Patient?gender:not=male")))
    assert patients == {analysed["patients"][0]}  # no gender at all: included, as FHIR's :not says


def test_missing_finds_resources_with_and_without_the_element(service_account: Any, analysed: dict[str, Any]) -> None:
    patient_a, patient_b = analysed["patients"]
    assert ids(service_account.get("/fhir/Patient?gender:missing=true")) == [patient_a]
    assert ids(service_account.get("/fhir/Patient?gender:missing=false")) == [patient_b]
    ecgs = set(analysed["ecgs"])
    # The AI result Observations are derived from an ECG; the ECGs themselves are not.
    assert set(ids(service_account.get("/fhir/Observation?derived-from:missing=true"))) == ecgs
    assert not set(ids(service_account.get("/fhir/Observation?derived-from:missing=false"))) & ecgs


def test_string_matching_starts_with_exact_and_contains(service_account: Any, analysed: dict[str, Any]) -> None:
    patient_a = analysed["patients"][0]
    assert ids(service_account.get("/fhir/Patient?family=müller")) == [patient_a]  # case-insensitive prefix
    assert ids(service_account.get("/fhir/Patient?family=lüden")) == []
    assert ids(service_account.get("/fhir/Patient?family:contains=LÜDEN")) == [patient_a]
    assert ids(service_account.get("/fhir/Patient?family:exact=Müller-Lüdenscheidt")) == [patient_a]
    assert ids(service_account.get("/fhir/Patient?family:exact=müller-lüdenscheidt")) == []
    assert ids(service_account.get("/fhir/Patient?name=anna")) == [patient_a]


def test_token_text_matches_the_display(service_account: Any, analysed: dict[str, Any]) -> None:
    report = analysed["reports"][0].content
    words = (report["code"].get("text") or report["code"]["coding"][0]["display"]).split()[0]
    found = set(ids(service_account.get(f"/fhir/DiagnosticReport?code:text={words.upper()}")))
    assert found == {r.logical_id for r in analysed["reports"]}
    assert ids(service_account.get("/fhir/DiagnosticReport?code:text=zzz-no-such-words")) == []


def test_reference_type_modifier(service_account: Any, analysed: dict[str, Any]) -> None:
    patient_a = analysed["patients"][0]
    found = set(
        ids(service_account.get(f"/fhir/Observation?subject:Patient={patient_a}&code=http://loinc.org|11524-6"))
    )
    assert found == set(analysed["ecgs"][:2])


def test_the_capability_statement_lists_exactly_what_searches_accept(service_account: Any) -> None:
    statement = service_account.get("/fhir/metadata").json()
    for resource in statement["rest"][0]["resource"]:
        for param in resource["searchParam"]:
            assert param_kind(resource["type"], param["name"]) == param["type"]
            for modifier in MODIFIERS[param["type"]]:
                query = f"/fhir/{resource['type']}?{param['name']}:{modifier}=true" if modifier == "missing" else None
                if query:
                    assert service_account.get(query).status_code == 200, query
            # Every listed parameter is searchable (a 200, not a 400), with an innocuous value.
            value = "2024" if param["type"] == "date" else "x"
            assert service_account.get(f"/fhir/{resource['type']}?{param['name']}={value}").status_code == 200
        for include in resource["searchInclude"]:
            assert service_account.get(f"/fhir/{resource['type']}?_include={include}").status_code == 200
        for include in resource["searchRevInclude"]:
            assert service_account.get(f"/fhir/{resource['type']}?_revinclude={include}").status_code == 200
    observation = next(r for r in statement["rest"][0]["resource"] if r["type"] == "Observation")
    assert set(observation["searchInclude"]) == {"Observation:derived-from", "Observation:subject"}
    assert {"DiagnosticReport:result", "Provenance:target"} <= set(observation["searchRevInclude"])
