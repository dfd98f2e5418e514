"""Lean, linked search results (issue 15): _count=0, _summary, _elements, the waveform only when asked
for, _include/_revinclude within the caller's organisation, and keyset paging stable while ECGs arrive."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cds.analysis.models import AnalysisJob
from cds.core.models import Organization
from cds.fhir.models import StoredResource
from cds.fhir.services import fhir_resource_store
from cds.pipeline.analysis import analysis_results_store
from tests.cds.factories import make_result
from tests.conftest import OTHER_ORGANIZATION, FhirTestClient, api_client_token

pytestmark = pytest.mark.django_db
ECG_CODE = "code=http://loinc.org|11524-6"


def entries(bundle: dict[str, Any], mode: str = "match") -> list[dict[str, Any]]:
    return [e["resource"] for e in bundle["entry"] if e["search"]["mode"] == mode]


def links(bundle: dict[str, Any]) -> dict[str, str]:
    return {link["relation"]: link["url"].removeprefix("http://testserver") for link in bundle["link"]}


def subsetted(resource: dict[str, Any]) -> bool:
    return any(t["code"] == "SUBSETTED" for t in resource.get("meta", {}).get("tag", []))


@pytest.fixture
def analysed(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> dict[str, Any]:
    patient = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    ecg = service_account.post("/fhir/Observation", ecg_factory(9, patient_reference=f"Patient/{patient}")).json()
    analysis_results_store(job=AnalysisJob.objects.get(recording__logical_id=ecg["id"]), result=make_result(score=2.5))
    report = StoredResource.objects.get(resource_type="DiagnosticReport", is_current=True)
    return {"patient": patient, "ecg": ecg["id"], "report": report}


def test_count_zero_and_summary_count_give_the_total_only(service_account: Any, analysed: dict[str, Any]) -> None:
    for query in ("_count=0", "_summary=count"):
        bundle = service_account.get(f"/fhir/Observation?{ECG_CODE}&{query}").json()
        assert bundle["total"] == 1 and bundle["entry"] == []
        assert "next" not in links(bundle)  # a client following it would loop forever


def test_searches_leave_the_waveform_out_unless_asked(service_account: Any, analysed: dict[str, Any]) -> None:
    lean = entries(service_account.get(f"/fhir/Observation?{ECG_CODE}").json())[0]
    assert subsetted(lean) and len(lean["component"]) == 12
    assert all("data" not in c["valueSampledData"] and c["valueSampledData"]["period"] for c in lean["component"])
    for query in ("_summary=false", "_elements=component,code"):
        full = entries(service_account.get(f"/fhir/Observation?{ECG_CODE}&{query}").json())[0]
        assert all(c["valueSampledData"]["data"] for c in full["component"]), query
    assert not subsetted(entries(service_account.get(f"/fhir/Observation?{ECG_CODE}&_summary=false").json())[0])
    read = service_account.get(f"/fhir/Observation/{analysed['ecg']}").json()
    assert all(c["valueSampledData"]["data"] for c in read["component"]) and not subsetted(read)


def test_elements_and_summary_subset_and_say_so(service_account: Any, analysed: dict[str, Any]) -> None:
    only = entries(service_account.get(f"/fhir/Observation?{ECG_CODE}&_elements=subject,status").json())[0]
    assert set(only) == {"resourceType", "id", "meta", "subject", "status"} and subsetted(only)
    summary = entries(service_account.get("/fhir/DiagnosticReport?_summary=true").json())[0]
    assert subsetted(summary) and summary["status"] and "conclusion" not in summary
    assert "conclusion" in analysed["report"].content  # there was something to leave out
    data = entries(service_account.get("/fhir/DiagnosticReport?_summary=data").json())[0]
    assert "text" not in data and data["conclusion"] == analysed["report"].content["conclusion"]


def test_include_follows_the_references_clients_follow(service_account: Any, analysed: dict[str, Any]) -> None:
    report = analysed["report"]
    results = {r["reference"].rsplit("/", 1)[-1] for r in report.content["result"]}
    bundle = service_account.get("/fhir/DiagnosticReport?_include=DiagnosticReport:result").json()
    assert {r["id"] for r in entries(bundle, "include")} == results
    bundle = service_account.get(f"/fhir/Observation?{ECG_CODE}&_include=Observation:subject").json()
    assert [(r["resourceType"], r["id"]) for r in entries(bundle, "include")] == [("Patient", analysed["patient"])]
    derived = service_account.get(f"/fhir/Observation?derived-from=Observation/{analysed['ecg']}").json()
    bundle = service_account.get(
        f"/fhir/Observation?derived-from=Observation/{analysed['ecg']}&_include=Observation:derived-from"
    ).json()
    assert [r["id"] for r in entries(bundle, "include")] == [analysed["ecg"]] and entries(derived)
    tasks = service_account.get("/fhir/Task?_include=Task:focus").json()
    assert [r["id"] for r in entries(tasks, "include")] == [report.logical_id]
    provenance = service_account.get("/fhir/Provenance?_include=Provenance:target:DiagnosticReport").json()
    assert [r["id"] for r in entries(provenance, "include")] == [report.logical_id]


def test_revinclude_brings_what_points_here(service_account: Any, analysed: dict[str, Any]) -> None:
    report = analysed["report"]
    result_id = report.content["result"][0]["reference"].rsplit("/", 1)[-1]
    bundle = service_account.get(
        f"/fhir/Observation?_id={result_id}&_revinclude=DiagnosticReport:result&_revinclude=Provenance:target"
    ).json()
    included = {(r["resourceType"], r["id"]) for r in entries(bundle, "include")}
    assert ("DiagnosticReport", report.logical_id) in included
    assert any(kind == "Provenance" for kind, _ in included)
    assert bundle["total"] == 1  # includes are not counted as matches


def test_includes_never_cross_organisations(service_account: Any, client: Client, analysed: dict[str, Any]) -> None:
    """Another tenant's report that points at our ECG's result is not revincluded for us, nor ours for them."""
    report = analysed["report"]
    result_ref = report.content["result"][0]["reference"]
    other = Organization.objects.create(slug=OTHER_ORGANIZATION, name="B")
    fhir_resource_store(
        resource_type="DiagnosticReport",
        content={**report.content, "id": None, "result": [{"reference": result_ref}]},
        source="test",
        organization_id=other.pk,
    )
    query = f"/fhir/Observation?_id={result_ref.rsplit('/', 1)[-1]}&_revinclude=DiagnosticReport:result"
    mine = entries(service_account.get(query).json(), "include")
    assert [r["id"] for r in mine] == [report.logical_id]
    theirs = FhirTestClient(Client(), api_client_token(client, "system/*.rs", OTHER_ORGANIZATION))
    bundle = theirs.get("/fhir/DiagnosticReport?_include=DiagnosticReport:result").json()
    assert bundle["total"] == 1 and entries(bundle, "include") == []  # our Observation stays invisible to them


def test_keyset_pages_stay_stable_while_ecgs_arrive(service_account: Any, ecg_factory: Any) -> None:
    sent = [
        service_account.post("/fhir/Observation", ecg_factory(9, identifier=f"k{i}")).json()["id"] for i in range(5)
    ]
    first = service_account.get(f"/fhir/Observation?{ECG_CODE}&_count=2").json()
    assert [r["id"] for r in entries(first)] == [sent[4], sent[3]]  # newest first
    assert {"self", "first", "next"} <= set(links(first)) and "previous" not in links(first)
    newcomer = service_account.post("/fhir/Observation", ecg_factory(9, identifier="late")).json()["id"]
    second = service_account.get(links(first)["next"]).json()
    assert [r["id"] for r in entries(second)] == [sent[2], sent[1]]  # not shifted by the newcomer
    third = service_account.get(links(second)["next"]).json()
    assert [r["id"] for r in entries(third)] == [sent[0]] and "next" not in links(third)
    back = service_account.get(links(third)["previous"]).json()
    assert [r["id"] for r in entries(back)] == [sent[2], sent[1]]
    assert [r["id"] for r in entries(service_account.get(links(back)["previous"]).json())] == [sent[4], sent[3]]
    restart = service_account.get(links(third)["first"]).json()
    assert [r["id"] for r in entries(restart)] == [newcomer, sent[4]] and restart["total"] == 6


def test_a_forged_cursor_is_refused(service_account: Any) -> None:
    response = service_account.get("/fhir/Observation?_cursor=a1.%27;drop")
    assert response.status_code == 400 and response.json()["issue"][0]["expression"] == ["_cursor"]
