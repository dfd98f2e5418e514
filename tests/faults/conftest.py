"""A service stack whose parts the fault tests can kill and restart: private PostgreSQL and Redis.

The shared PostgreSQL and RabbitMQ of the machine must not be restarted under other test runs, so
the fault stack starts its own: a PostgreSQL cluster (initdb in a temporary directory, run as the
``postgres`` user) and a Redis broker with an append-only file, so that queued messages survive
a restart as they would on a production broker with persistence. On top: the local Triton, a
gunicorn web process, a Celery worker, and a real EHR (sekmet-fhir), all on 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import requests

from deploy.livestack import (
    BIN,
    client_token,
    create_api_client,
    free_port,
    live_env,
    manage,
    spawn,
    stop_processes,
    wait_for_health,
    web_command,
    worker_command,
)
from inference.local_triton import LocalTriton
from tests.cds.writeback.conftest import Loopback, Reply, Request, Sekmet, forward
from tests.conftest import LEADS_12, REPO_ROOT, read_sample_record
from tests.inference.conftest import require_triton_venv

PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"))), None)
REPOSITORY = REPO_ROOT / "deploy" / "triton" / "model_repository"


def _as_postgres(*command: str) -> None:
    subprocess.run(["runuser", "-u", "postgres", "--", *command], check=True, capture_output=True)


class PrivatePostgres:
    """A throw-away PostgreSQL cluster on a free port (trust auth, fsync off: tests only)."""

    def __init__(self, root: Path) -> None:
        assert PG_BIN is not None
        self.data = root / "pgdata"
        self.port = free_port()
        self.log = root / "postgres.log"
        self.data.mkdir()
        shutil.chown(self.data, "postgres", "postgres")
        shutil.chown(root, "postgres", "postgres")
        _as_postgres(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust")

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/cds"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self) -> None:
        _as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop")

    def query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), connect_timeout=5) as conn:
            return conn.execute(sql, params).fetchall()


class PrivateRedis:
    """A Redis broker on a free port whose queue persists across restarts (append-only file)."""

    def __init__(self, root: Path) -> None:
        self.dir = root / "redis"
        self.dir.mkdir()
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir)]
        command += ["--appendonly", "yes", "--appendfsync", "always", "--save", ""]
        log = (self.dir / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if (
                subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True).stdout.strip()
                == b"PONG"
            ):
                return
            time.sleep(0.1)
        raise RuntimeError("redis did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=20)


class PrivateRabbitMQ:
    """A second RabbitMQ node on its own ports, data on disk: restartable without touching the machine's node.

    Runs as the ``rabbitmq`` user (the server script switches to it), so its directory belongs to
    that user; the management plugin is off. Celery's queues are durable and its messages
    persistent, so queued jobs must survive a restart of this node.
    """

    def __init__(self, root: Path) -> None:
        self.dir = root / "rabbitmq"
        self.dir.mkdir()
        (self.dir / "enabled_plugins").write_text("[].\n")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.dir)], check=True)
        self.port, self.dist_port = free_port(), free_port()
        self.node = f"faults{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self) -> None:
        env = {
            **os.environ,
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "RABBITMQ_MNESIA_BASE": str(self.dir / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.dir / "log"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.dir / "enabled_plugins"),
            "RABBITMQ_CONFIG_FILE": str(self.dir / "none"),  # no config file: the defaults
        }
        log = (self.dir.parent / "rabbitmq.log").open("ab")
        self.process = subprocess.Popen(["rabbitmq-server"], env=env, stdout=log, stderr=subprocess.STDOUT)
        # await_startup gives up at once (exit 69) while the node has not registered with epmd yet.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited with {self.process.returncode}; see {log.name}")
            ready = subprocess.run(
                ["rabbitmqctl", "-n", self.node, "await_startup", "--timeout", "30"], capture_output=True, check=False
            )
            if ready.returncode == 0:
                return
            time.sleep(1)
        raise RuntimeError(f"rabbitmq node {self.node} did not start; see {log.name}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            subprocess.run(["rabbitmqctl", "-n", self.node, "stop"], check=False, capture_output=True, timeout=60)
            self.process.wait(timeout=60)


def rabbitmq_available() -> bool:
    return (
        shutil.which("rabbitmq-server") is not None
        and subprocess.run(["id", "rabbitmq"], capture_output=True).returncode == 0
    )


class EhrGateway:
    """The EHR's front door: forwards to sekmet, or fails the way a struggling EHR does (``mode``)."""

    def __init__(self, ehr: Sekmet) -> None:
        self.ehr = ehr
        self.mode = "forward"  # forward | error (HTTP 500) | hang (answers after the client gave up)
        self.server = Loopback(self.handle)

    def handle(self, request: Request) -> Reply:
        if self.mode == "error":
            return Reply(
                500, {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "exception"}]}
            )
        if self.mode == "hang":
            return Reply(503, b"", delay_s=8.0)
        return forward(self.ehr, request)


class FaultStack:
    """Every process of the service, each one startable and stoppable by the test."""

    def __init__(self, root: Path, triton: LocalTriton, ehr: Sekmet) -> None:
        self.root = root
        self.triton = triton
        self.ehr = ehr
        self.gateway = EhrGateway(ehr)
        self.db = PrivatePostgres(root)
        self.broker = PrivateRedis(root)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = live_env(
            database_url=self.db.url,
            base_url=self.base,
            queue=f"faults-{uuid.uuid4().hex[:6]}",
            CELERY_BROKER_URL=self.broker.url,
            CDS_VAR_DIR=str(root),
            INFERENCE_BACKEND="triton",
            TRITON_URL=triton.grpc_url,
            TRITON_PROTOCOL="grpc",
            TRITON_HTTP_URL="",
            TRITON_TIMEOUT_S="5",
            INFERENCE_FOUNDATION_ENABLED=str("ecg_foundation" in triton.load_models).lower()
            if triton.load_models
            else "false",
            WRITEBACK_ENABLED="true",
            WRITEBACK_FHIR_BASE_URL=self.gateway.server.url,
            WRITEBACK_AUTH="none",
            WRITEBACK_TIMEOUT_S="3",
            WRITEBACK_SENDING_TIMEOUT_S="20",
            WRITEBACK_MAX_ATTEMPTS="30",
            WRITEBACK_BACKOFF_BASE_S="2",
            WRITEBACK_BACKOFF_MAX_S="8",
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.token = ""

    def start(self) -> None:
        self.db.start()
        subprocess.run(
            [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.db.port), "-U", "postgres", "cds"], check=True
        )  # type: ignore[operator]
        self.broker.start()
        manage(self.env, "migrate", "-v", "0")
        credentials = create_api_client(self.env, "faults")
        self.start_process("web")
        self.start_process("worker")
        self.start_process("beat")  # the production schedule (sweeps every 60 s)
        wait_for_health(self.base, timeout_s=60, log=self.root / "web.log")
        self.token = client_token(credentials)

    def start_process(self, name: str) -> None:
        commands = {
            "web": web_command(self.port, workers=2),
            "worker": worker_command(self.env["CELERY_TASK_DEFAULT_QUEUE"], concurrency=1),
            "beat": [str(BIN / "celery"), "-A", "cds", "beat", "--schedule", str(self.root / "beat-schedule")],
        }
        self.processes[name] = spawn(commands[name], self.env, self.root / f"{name}.log", new_session=True)

    def kill_process(self, name: str) -> None:
        """SIGKILL the process and its children (a node loss, an OOM kill)."""
        process = self.processes.pop(name)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop(self) -> None:
        stop_processes(self.processes.values(), timeout_s=20, group=True)
        self.broker.stop()
        self.db.stop()
        self.gateway.server.close()

    # --- the EHR's side ---

    def post_ecg(self, ecg_id: int, identifier: str, base: str | None = None) -> str:
        from cds.ecg.encoding import ecg_observation

        samples_uv, header = read_sample_record(ecg_id)
        observation = ecg_observation(
            samples_uv, sample_rate_hz=header["fs"], leads=LEADS_12, identifier=("urn:oid:1.2.3.4.ecg", identifier)
        )
        response = requests.post(
            f"{base or self.base}/fhir/Observation",
            data=json.dumps(observation),
            headers={"Content-Type": "application/fhir+json", "Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    def sweep(self, *, running_after_s: int = 1) -> None:
        """Run the periodic recovery (beat's task) now, as beat would on its schedule."""
        code = (
            "import django; django.setup();"
            "from cds.analysis.services import analysis_jobs_requeue_stuck as s;"
            f"print(s(pending_after_s=5, running_after_s={running_after_s}, max_attempts=3))"
        )
        subprocess.run([str(BIN / "python"), "-c", code], cwd=REPO_ROOT, env=self.env, check=True, capture_output=True)

    def wait_until_done(
        self, observation_ids: list[str], timeout_s: float, *, sweep_every_s: float = 0
    ) -> dict[str, str]:
        """Wait for every job to end (sweeping now and then if asked); return status by observation."""
        deadline = time.monotonic() + timeout_s
        next_sweep = time.monotonic() + sweep_every_s
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            rows = self.db.query(
                "SELECT r.logical_id, j.status FROM analysis_analysisjob j JOIN ecg_ecgrecording r ON r.id = j.recording_id"
                " WHERE r.logical_id = ANY(%s)",
                observation_ids,
            )
            states = dict(rows)
            if len(states) == len(observation_ids) and all(s in {"succeeded", "failed"} for s in states.values()):
                return states
            if sweep_every_s and time.monotonic() >= next_sweep:
                self.sweep()
                next_sweep = time.monotonic() + sweep_every_s
            time.sleep(0.5)
        return states

    def assert_analysed_and_written_back_once(self, observation_ids: list[str], timeout_s: float = 90) -> None:
        """Every ECG: job succeeded, one prediction per model, one outbox message delivered, one copy at the EHR."""
        states = self.wait_until_done(observation_ids, timeout_s, sweep_every_s=10)
        errors = self.db.query(
            "SELECT r.logical_id, j.error FROM analysis_analysisjob j JOIN ecg_ecgrecording r ON r.id = j.recording_id"
            " WHERE r.logical_id = ANY(%s) AND j.status <> 'succeeded'",
            observation_ids,
        )
        assert states == {oid: "succeeded" for oid in observation_ids}, (states, errors)
        counts = self.db.query(
            "SELECT r.logical_id, count(p.id), count(DISTINCT j.id) FROM ecg_ecgrecording r"
            " JOIN analysis_analysisjob j ON j.recording_id = r.id"
            " LEFT JOIN analysis_prediction p ON p.job_id = j.id AND p.model_name = 'ecg-anomaly-detector'"
            " WHERE r.logical_id = ANY(%s) GROUP BY r.logical_id",
            observation_ids,
        )
        assert {oid: (1, 1) for oid in observation_ids} == {row[0]: (row[1], row[2]) for row in counts}
        deadline = time.monotonic() + timeout_s
        pending: list[Any] = []
        while time.monotonic() < deadline:
            pending = self.db.query(
                "SELECT key, status, last_error FROM writeback_outboxmessage WHERE status <> 'delivered'"
            )
            if not pending:
                break
            time.sleep(0.5)
        assert not pending, pending
        jobs = self.db.query(
            "SELECT j.writeback_uuid FROM analysis_analysisjob j JOIN ecg_ecgrecording r ON r.id = j.recording_id"
            " WHERE r.logical_id = ANY(%s)",
            observation_ids,
        )
        system = f"{self.env['PUBLIC_BASE_URL']}/identifiers/ecg-analysis"  # WRITEBACK_IDENTIFIER_SYSTEM's default
        for (job_id,) in jobs:
            scores = self.ehr.search("Observation", identifier=f"{system}|job-{job_id}-anomaly-score")
            assert len(scores) == 1, f"job {job_id}: {len(scores)} score Observations at the EHR"


@pytest.fixture(scope="module")
def fault_stack() -> Iterator[FaultStack]:
    """The whole stack on private PostgreSQL and Redis, with the local Triton and a real EHR."""
    if PG_BIN is None or shutil.which("redis-server") is None or shutil.which("runuser") is None:
        pytest.skip("fault tests need PostgreSQL's server binaries, redis-server and runuser on this machine")
    require_triton_venv()
    root = Path(tempfile.mkdtemp(prefix="cds-faults-", dir="/tmp"))
    root.chmod(0o755)
    models = sorted(path.parent.name for path in REPOSITORY.glob("*/config.pbtxt"))
    triton = LocalTriton(
        repository=REPOSITORY,
        config_name="cpu",
        load_models=models,
        work_dir=root / "triton",
        log_path=root / "triton.log",
    )
    triton.start(timeout_s=120)
    ehr = Sekmet(root / "ehr")
    (root / "ehr").mkdir()
    ehr.start()
    stack = FaultStack(root, triton, ehr)
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
        triton.stop()
        ehr.stop()
        shutil.rmtree(root, ignore_errors=True)
