"""No PHI in logs: run the service's main flows with every logger at DEBUG and grep what was logged.

The flows: a transaction Bundle with a Patient carrying distinctive identifier, name and birth
date plus its ECG, the same Bundle again (conditional create), searches by that identifier, the
analysis job, a CDS Hooks patient-view for the patient, refused requests (bad SampledData, a bad
birthDate next to the name, a forged token) and an unexpected crash on a FHIR route. None of the
distinctive values nor a run of the waveform's ``data`` may appear in any log record, its
arguments or its traceback. The live test does the same against gunicorn and a Celery worker and
greps their log files.
"""

from __future__ import annotations

import copy
import io
import logging
import sys
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
from django.conf import settings

from cds.analysis.models import AnalysisJob
from cds.core.logging import RedactPhiFilter
from cds.ecg.encoding import ecg_transaction_bundle
from cds.pipeline.tasks import analysis_job_run

MRN_SYSTEM = "urn:oid:1.2.3.4.mrn"
MRN = "CANARY-MRN-58213"
FAMILY = "Quillfeather"
GIVEN = "Ottoline"
BIRTH_DATE = "1937-06-29"


def canary_patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "identifier": [{"system": MRN_SYSTEM, "value": MRN}],
        "name": [{"family": FAMILY, "given": [GIVEN]}],
        "gender": "female",
        "birthDate": BIRTH_DATE,
        "telecom": [{"system": "phone", "value": "+44 20 7946 0991"}],
    }


def phi_markers(observation: dict[str, Any]) -> list[str]:
    """Return the strings that must never be logged: the canaries and runs of each lead's data."""
    runs = []
    for component in observation["component"]:
        data = component["valueSampledData"]["data"]
        start = len(data) // 3
        runs.append(data[start : start + 40].split(" ", 1)[1].rsplit(" ", 1)[0])  # whole numbers only
    return [MRN, FAMILY, GIVEN, BIRTH_DATE, "7946 0991", *runs]


def logged_text(records: list[logging.LogRecord]) -> str:
    """Return everything a handler could write for ``records``: message, raw args, traceback, stack."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    parts = []
    for record in records:
        parts.append(formatter.format(record))
        parts.append(repr(record.args))
        parts.append(repr(record.__dict__.get("extra", "")))
    return "\n".join(parts)


@pytest.fixture
def all_loggers_at_debug(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    # The root at DEBUG: every logger without its own level (ours, DRF's, Celery's, django.request) records.
    # django.db.backends keeps WARNING; it logs SQL only with DEBUG=True, never in production.
    caplog.set_level(logging.DEBUG)
    return caplog


@pytest.mark.django_db
def test_it_logs_no_patient_identifiers_names_birth_dates_or_waveforms(
    all_loggers_at_debug: pytest.LogCaptureFixture, service_account: Any, anonymous: Any, ecg_factory: Any
) -> None:
    caplog = all_loggers_at_debug
    observation = ecg_factory(9, identifier="ecg-canary-1")
    bundle = ecg_transaction_bundle(patient=canary_patient(), observation=observation)
    # 1. Ingest, twice (the second one is a conditional no-op), then read it back.
    assert service_account.post("/fhir", bundle).status_code == 200
    assert service_account.post("/fhir", bundle).status_code == 200
    found = service_account.get(f"/fhir/Patient?identifier={quote(f'{MRN_SYSTEM}|{MRN}')}").json()
    assert found["total"] == 1
    patient_id = found["entry"][0]["resource"]["id"]
    assert service_account.get(f"/fhir/Observation?patient=Patient/{patient_id}").status_code == 200
    # 2. The analysis job (the worker's code path, called directly).
    job = AnalysisJob.objects.get()
    assert analysis_job_run(job.pk) in {"succeeded", "failed"}
    # 3. The CDS hook for this patient, with the EHR's prefetch carrying the same demographics.
    hook = {
        "hook": "patient-view",
        "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
        "context": {"patientId": "ehr-123", "userId": "Practitioner/1"},
        "prefetch": {"patient": {**canary_patient(), "id": "ehr-123"}},
    }
    assert (
        service_account.post("/cds-services/ecg-ai-findings", hook, content_type="application/json").status_code == 200
    )
    # 4. Refused requests: bad SampledData, a bad birthDate next to the name, a forged token.
    bad = copy.deepcopy(bundle)
    bad["entry"][1]["resource"]["component"][0]["valueSampledData"]["data"] += " 12x"
    bad["entry"][0]["request"].pop("ifNoneExist")
    assert service_account.post("/fhir", bad).status_code == 400
    bad_observation = copy.deepcopy(observation)
    bad_observation["component"][3]["valueSampledData"]["data"] = (
        "1 2 NaN " + observation["component"][3]["valueSampledData"]["data"]
    )
    assert service_account.post("/fhir/Observation", bad_observation).status_code == 400
    assert (
        service_account.post("/fhir/Patient", {**canary_patient(), "birthDate": f"{FAMILY}-{MRN}"}).status_code == 400
    )
    anonymous.headers = {"HTTP_AUTHORIZATION": f"Bearer {MRN}.{FAMILY}"}
    assert anonymous.get(f"/fhir/Patient?identifier={MRN}").status_code == 401
    # 5. An unexpected crash on a FHIR route is logged with its traceback: the request body is not in it.
    with mock.patch("cds.fhirapi.apis.resource_create", autospec=True, side_effect=RuntimeError("boom")):
        assert service_account.post("/fhir/Patient", canary_patient()).status_code == 500

    text = logged_text(caplog.records)
    assert "unhandled error on a FHIR route" in text and "Traceback" in text  # the crash was logged
    leaked = [marker for marker in phi_markers(observation) if marker in text]
    assert not leaked, f"PHI in logs: {leaked}"


def test_it_installs_the_redaction_filter_on_the_console_handler() -> None:
    assert (
        settings.LOGGING["handlers"]["console"]["filters"][0] == "redact_phi"
    )  # first: later filters see redacted text
    assert settings.LOGGING["filters"]["redact_phi"]["()"] == "cds.core.logging.RedactPhiFilter"
    console = [h for h in logging.getLogger().handlers if any(isinstance(f, RedactPhiFilter) for f in h.filters)]
    assert console, "the root logger's console handler lacks RedactPhiFilter"


def test_it_redacts_phi_a_library_puts_in_a_message_or_traceback() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RedactPhiFilter())
    logger = logging.getLogger("tests.phi")
    logger.addHandler(handler)
    try:
        logger.warning("remote said: %s", {"birthDate": BIRTH_DATE, "name": [{"family": FAMILY}], "value": MRN})
        logger.warning("data %s", "12 -5 33 40 41 38 30 22 15 9 E 4")
        try:
            raise ValueError(f"1 validation error [type=string_type, input_value='{FAMILY}', input_type=str]")
        except ValueError:
            logger.error("crashed", exc_info=sys.exc_info())
    finally:
        logger.removeHandler(handler)
    written = stream.getvalue()
    assert "crashed" in written and "Traceback" in written and "[redacted]" in written
    assert "[samples redacted]" in written
    for value in (BIRTH_DATE, FAMILY, MRN, "33 40 41 38"):
        assert value not in written, written


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_it_writes_no_phi_to_the_web_and_worker_logs(tmp_path: Any, ecg_factory: Any) -> None:
    import requests

    from tests.livestack import LiveStack, wait_for_job

    stack = LiveStack(tmp_path, env={"LOG_LEVEL": "DEBUG"})
    try:
        stack.start()
        headers = {"Authorization": f"Bearer {stack.token()}", "Content-Type": "application/fhir+json"}
        observation = ecg_factory(9, identifier="ecg-canary-live")
        bundle = ecg_transaction_bundle(patient=canary_patient(), observation=observation)
        response = requests.post(f"{stack.base}/fhir", json=bundle, headers=headers, timeout=30)
        assert response.status_code == 200, response.text
        observation_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
        assert wait_for_job(observation_id) in {"succeeded", "failed"}
        requests.get(f"{stack.base}/fhir/Patient", params={"identifier": MRN}, headers=headers, timeout=30)
        bad = copy.deepcopy(observation)
        bad["component"][0]["valueSampledData"]["data"] += " x"
        assert requests.post(f"{stack.base}/fhir/Observation", json=bad, headers=headers, timeout=30).status_code == 400
    finally:
        stack.stop()
    logs = "\n".join(path.read_text(errors="replace") for path in tmp_path.glob("*.log"))
    assert "analysis.job_run" in logs  # the worker did log at DEBUG/INFO
    leaked = [marker for marker in phi_markers(observation) if marker in logs]
    assert not leaked, f"PHI in the live logs: {leaked}"
