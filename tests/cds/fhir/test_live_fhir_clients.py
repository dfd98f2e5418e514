"""Ingest through a live gunicorn process and a real Celery worker on RabbitMQ, with two real FHIR clients.

The server and worker are separate processes using pytest-django's test database, so what they
see is what a deployment sees: real HTTP, real broker, real PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.livestack import LiveStack, wait_for_job

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
BIN = Path(sys.executable).parent


def test_it_ingests_reads_searches_and_deduplicates_with_fhirpy(
    live_stack: LiveStack, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(f"{live_stack.base}/fhir", authorization=f"Bearer {live_stack.token()}")
    patient = client.resource("Patient", **{k: v for k, v in patient_resource.items() if k != "resourceType"})
    patient.save()
    observation_json = ecg_factory(63, identifier="fhirpy-1", patient_reference=f"Patient/{patient.id}")
    observation = client.resource("Observation", **{k: v for k, v in observation_json.items() if k != "resourceType"})
    observation.save()
    assert observation.id
    assert wait_for_job(observation.id) == "succeeded"

    fetched = client.reference("Observation", observation.id).to_resource()
    assert (
        fetched["component"][7]["valueSampledData"]["data"]
        == observation_json["component"][7]["valueSampledData"]["data"]
    )
    # The patient now has the ECG and the analysis' own Observations (score, intervals).
    ecgs = client.resources("Observation").search(patient=f"Patient/{patient.id}", code="http://loinc.org|11524-6")
    assert [r.id for r in ecgs.fetch_all()] == [observation.id]
    derived = client.resources("Observation").search(**{"derived-from": f"Observation/{observation.id}"}).fetch_all()
    assert derived and all(r["subject"]["reference"] == f"Patient/{patient.id}" for r in derived)
    assert client.resources("Observation").search(identifier="urn:oid:1.2.3.4.ecg|fhirpy-1").count() == 1

    # Replay as a conditional create: the same resource comes back, nothing new is stored.
    replay = requests.post(
        f"{live_stack.base}/fhir/Observation",
        data=json.dumps(observation_json),
        headers={
            "Content-Type": "application/fhir+json",
            "Authorization": client.authorization,
            "If-None-Exist": "identifier=urn:oid:1.2.3.4.ecg|fhirpy-1",
        },
        timeout=30,
    )
    assert replay.status_code == 200 and replay.json()["id"] == observation.id
    # Nothing new: still one ECG, and still one analysis result set (the replay enqueued no job).
    assert client.resources("Observation").search(code="http://loinc.org|11524-6").count() == 1
    assert client.resources("Observation").search().count() == 1 + len(derived)


def test_it_ingests_reads_searches_and_replays_bundles_with_fhirclient(
    live_stack: LiveStack, ecg_factory: Any, patient_resource: dict[str, Any]
) -> None:
    from fhirclient import client as smart_client
    from fhirclient.models.bundle import Bundle
    from fhirclient.models.observation import Observation
    from fhirclient.models.patient import Patient

    from cds.ecg.encoding import ecg_transaction_bundle

    smart = smart_client.FHIRClient(settings={"app_id": "ecg-cds-tests", "api_base": f"{live_stack.base}/fhir"})
    smart.server.session.headers["Authorization"] = f"Bearer {live_stack.token()}"

    created_patient = Patient(copy.deepcopy(patient_resource)).create(smart.server)
    assert created_patient is not None and created_patient["id"]
    observation = Observation(
        ecg_factory(65, identifier="smart-1", patient_reference=f"Patient/{created_patient['id']}")
    )
    created = observation.create(smart.server)
    assert created is not None
    read_back = Observation.read(created["id"], smart.server)
    assert read_back.component[0].valueSampledData.period == 2
    assert read_back.subject.reference == f"Patient/{created_patient['id']}"
    results = Observation.where(struct={"patient": created_patient["id"]}).perform_resources(smart.server)
    assert [r.id for r in results] == [created["id"]]

    bundle_json = ecg_transaction_bundle(patient=patient_resource, observation=ecg_factory(9, identifier="smart-2"))
    Bundle(copy.deepcopy(bundle_json))  # the SMART models accept what we send
    first = smart.server.post_json("", bundle_json).json()
    second = smart.server.post_json("", bundle_json).json()
    assert [e["response"]["status"] for e in first["entry"]] == ["200 OK", "201 Created"]  # patient MRN already known
    assert [e["response"]["status"] for e in second["entry"]] == ["200 OK", "200 OK"]
    bundle_observation = first["entry"][1]["response"]["location"].split("/")[1]
    assert wait_for_job(bundle_observation) == "succeeded"
