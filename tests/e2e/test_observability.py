"""Logs, metrics and traces of a real stack (issue 16): gunicorn, a prefork Celery worker, the local Triton.

One ECG goes in by FHIR with an ``X-Request-ID``; the test then reads what the processes actually
produced: the worker's JSON log file (request id and job id on the task's lines), the worker's
metrics endpoint (task counts, stage and Triton latencies summed over its pool processes), the
web's ``/metrics``, and the spans both exported by OTLP/HTTP to a collector the test runs (one
trace from the FHIR request through the Celery task to each Triton call).
"""

from __future__ import annotations

import gzip
import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from django.db import connection
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from prometheus_client.parser import text_string_to_metric_families

from cds.ecg.encoding import ecg_observation, ecg_transaction_bundle
from deploy.livestack import (
    client_token,
    create_api_client,
    free_port,
    live_env,
    spawn,
    stop_processes,
    wait_for_health,
    web_command,
    worker_command,
)
from inference.local_triton import LocalTriton
from tests.conftest import LEADS_12, read_sample_record
from tests.livestack import wait_for_job

pytestmark = pytest.mark.live


class Collector:
    """A minimal OTLP/HTTP trace receiver: keeps every span it is sent (service, name, ids)."""

    def __init__(self) -> None:
        self.spans: list[dict[str, str]] = []
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
                    for scope in resource_spans.scope_spans:
                        collector.spans.extend(
                            {
                                "service": attributes.get("service.name", ""),
                                "name": span.name,
                                "trace": span.trace_id.hex(),
                                "span": span.span_id.hex(),
                                "parent": span.parent_span_id.hex(),
                            }
                            for span in scope.spans
                        )
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def collector() -> Iterator[Collector]:
    receiver = Collector()
    yield receiver
    receiver.server.shutdown()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


@pytest.mark.django_db(transaction=True)
def test_one_ecg_leaves_joined_logs_metrics_and_one_trace(
    tmp_path: Path, model_server: LocalTriton, collector: Collector
) -> None:
    from cds.analysis.models import AnalysisJob

    db = connection.settings_dict
    port, worker_metrics_port = free_port(), free_port()
    base = f"http://127.0.0.1:{port}"
    env = live_env(
        database_url=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        base_url=base,
        queue=f"obs-{uuid.uuid4().hex[:8]}",
        CDS_VAR_DIR=str(tmp_path),
        LOG_FORMAT="json",
        INFERENCE_BACKEND="triton",
        TRITON_URL=model_server.grpc_url,
        TRITON_PROTOCOL="grpc",
        TRITON_HTTP_URL=model_server.http_url,
        INFERENCE_FOUNDATION_ENABLED="false",  # the detector's one call is enough here
        TRACING_ENABLED="true",
        OTEL_EXPORTER_OTLP_ENDPOINT=collector.url,
        OTEL_BSP_SCHEDULE_DELAY="200",  # export spans within 0.2 s, not 5 s
    )
    (tmp_path / "prom-web").mkdir()
    (tmp_path / "prom-worker").mkdir()
    web_env = {**env, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-web")}
    worker_env = {
        **env,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom-worker"),
        "WORKER_METRICS_PORT": str(worker_metrics_port),
    }
    worker_log = tmp_path / "worker.log"
    processes = [
        spawn(web_command(port, workers=2), web_env, tmp_path / "web.log"),
        spawn(worker_command(env["CELERY_TASK_DEFAULT_QUEUE"], concurrency=2), worker_env, worker_log),
    ]
    try:
        wait_for_health(base, log=tmp_path / "web.log")
        token = client_token(create_api_client(env, "observability-test"))
        samples_uv, header = read_sample_record(9)
        observation = ecg_observation(
            samples_uv, sample_rate_hz=header["fs"], leads=LEADS_12, identifier=("urn:test:ecg", "obs-9")
        )
        patient = {"resourceType": "Patient", "identifier": [{"system": "urn:test:mrn", "value": "OBS-1"}]}
        request_id = f"ehr-{uuid.uuid4().hex[:12]}"
        response = requests.post(
            f"{base}/fhir",
            data=json.dumps(ecg_transaction_bundle(patient=patient, observation=observation)),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/fhir+json",
                "X-Request-ID": request_id,
            },
            timeout=30,
        )
        assert response.status_code == 200, response.text
        assert response.headers["X-Request-ID"] == request_id
        ecg_id = response.json()["entry"][1]["response"]["location"].split("/")[1]
        assert wait_for_job(ecg_id, timeout_s=120) == "succeeded"
        job = AnalysisJob.objects.get(recording__logical_id=ecg_id)

        # Logs: the worker's own file, one JSON object per line; the task's lines carry both ids.
        deadline = time.monotonic() + 10
        mine: list[dict[str, Any]] = []
        while not mine and time.monotonic() < deadline:
            lines = [json.loads(line) for line in worker_log.read_text().splitlines() if line.startswith("{")]
            mine = [line for line in lines if line.get("request_id") == request_id]
            time.sleep(0.2)
        assert mine, worker_log.read_text()[-3000:]
        assert {line.get("job_id") for line in mine} == {str(job.pk)}
        assert any(line["logger"] == "celery.app.trace" and "succeeded" in line["message"] for line in mine), mine
        assert all(line.get("task") == "analysis.job_run" for line in mine)

        # Worker metrics: summed over its pool processes (multiprocess directory).
        worker_metrics = samples(requests.get(f"http://127.0.0.1:{worker_metrics_port}/metrics", timeout=10).text)
        assert worker_metrics[("cds_celery_tasks_total", (("state", "SUCCESS"), ("task", "analysis.job_run")))] == 1
        assert worker_metrics[("cds_triton_request_seconds_count", (("model", "ecg_detector"), ("outcome", "ok")))] >= 1
        assert worker_metrics[("cds_analysis_job_stage_seconds_count", (("stage", "triton"),))] == 1
        assert worker_metrics[("cds_analysis_jobs_finished_total", (("status", "succeeded"),))] == 1

        # Web metrics: the database's view, the same from either gunicorn worker.
        web_metrics = samples(requests.get(f"{base}/metrics", timeout=10).text)
        assert web_metrics[("cds_analysis_jobs", (("status", "succeeded"),))] == 1
        assert web_metrics[("cds_broker_up", ())] == 1

        # Traces: the FHIR request's server span, the task run and the Triton call share one trace.
        deadline = time.monotonic() + 15
        runs: list[dict[str, str]] = []
        while time.monotonic() < deadline:
            runs = [s for s in collector.spans if s["name"] == "run/analysis.job_run"]
            if runs and any(s["name"] == "triton infer" for s in collector.spans):
                break
            time.sleep(0.3)
        assert len(runs) == 1, collector.spans
        trace = [s for s in collector.spans if s["trace"] == runs[0]["trace"]]
        by_id = {s["span"]: s for s in trace}
        (server,) = [s for s in trace if s["service"] == "ecg-cds-web" and s["parent"] == ""]
        assert server["name"].startswith("POST"), server
        triton = [s for s in trace if s["name"] == "triton infer"]
        assert triton and all(s["service"] == "ecg-cds-worker" for s in triton)

        def ancestors(span: dict[str, str]) -> list[str]:
            chain = []
            while span["parent"] in by_id:
                span = by_id[span["parent"]]
                chain.append(span["name"])
            return chain

        assert "run/analysis.job_run" in ancestors(triton[0]) and server["name"] in ancestors(triton[0])
    finally:
        stop_processes(processes, timeout_s=15)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
