"""Builders shared by the write-back tests."""

from __future__ import annotations

import uuid
from typing import Any

from cds.analysis.fhir_results import identifier_system, result_entries, transaction_bundle
from tests.cds.analysis.test_results_store import make_result

ECG_REFERENCE = {
    "reference": "http://testserver/fhir/Observation/ecg-1",
    "type": "Observation",
    "identifier": {"system": "urn:oid:1.2.3.4.ecg", "value": "ecg-1"},
}


def result_bundle(job_key: str | None = None, *, score: float = 2.5) -> tuple[str, dict[str, Any]]:
    """Return ``(job_key, transaction Bundle)`` for a flagged result, with a key unique to the call."""
    job_key = job_key or f"job-{uuid.uuid4().hex[:12]}"
    entries = result_entries(
        make_result(score=score), job_key=job_key, ecg=ECG_REFERENCE, patient=None, issued="2024-03-01T10:05:00Z"
    )
    return job_key, transaction_bundle(entries)


def identifier(value: str) -> str:
    """Return the ``identifier`` search value of one of our result resources."""
    return f"{identifier_system()}|{value}"
