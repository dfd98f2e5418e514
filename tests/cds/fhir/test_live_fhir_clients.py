"""Ingest through a live gunicorn process and a real Celery worker on RabbitMQ, with two real FHIR clients.

The server and worker are separate processes using pytest-django's test database, so what they
see is what a deployment sees: real HTTP, real broker, real PostgreSQL.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection

from tests.conftest import REPO_ROOT

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveStack:
    """A gunicorn web process and a Celery worker sharing the test database and a private queue."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "PUBLIC_BASE_URL": self.base,
            "CELERY_TASK_DEFAULT_QUEUE": f"analysis-test-{uuid.uuid4().hex[:8]}",
            "CDS_VAR_DIR": str(tmp),
        }
        self.logs = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self._spawn(
            "web", [str(BIN / "gunicorn"), "cds.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "2"]
        )
        queue = self.env["CELERY_TASK_DEFAULT_QUEUE"]
        self._spawn(
            "worker", [str(BIN / "celery"), "-A", "cds", "worker", "--pool", "solo", "-Q", queue, "--loglevel", "INFO"]
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"web did not start: {(self.logs / 'web.log').read_text()[-2000:]}")

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.logs / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(command, cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT)
        )

    def token(self, scopes: str = "system/*.cruds") -> str:
        out = subprocess.run(
            [str(BIN / "python"), "manage.py", "create_api_client", "live-test", "--scopes", scopes],
            cwd=REPO_ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        credentials = json.loads(out)
        response = requests.post(
            credentials["token_url"],
            data={"grant_type": "client_credentials"},
            auth=(credentials["client_id"], credentials["client_secret"]),
            timeout=10,
        )
        response.raise_for_status()
        return str(response.json()["access_token"])

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        # Connections of killed children may linger for a moment; the test database must be droppable.
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )


@pytest.fixture
def live_stack(tmp_path: Path) -> Iterator[LiveStack]:
    stack = LiveStack(tmp_path)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def wait_for_job(observation_id: str, timeout_s: float = 60) -> str:
    from cds.analysis.models import AnalysisJob

    deadline = time.monotonic() + timeout_s
    status = "missing"
    while time.monotonic() < deadline:
        job = AnalysisJob.objects.filter(recording__logical_id=observation_id).first()
        status = job.status if job else "missing"
        if status in {"succeeded", "failed"}:
            return status
        time.sleep(0.3)
    return status


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
    found = client.resources("Observation").search(patient=f"Patient/{patient.id}").fetch_all()
    assert [r.id for r in found] == [observation.id]
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
    assert client.resources("Observation").search().count() == 1


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
