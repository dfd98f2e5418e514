"""A live service stack for tests: gunicorn and a Celery worker on the test database and a private queue.

The processes are separate from the test, so what they see is what a deployment sees: real HTTP,
a real broker, real PostgreSQL (pytest-django's test database; use ``django_db(transaction=True)``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import requests
from django.db import connection

from tests.conftest import REPO_ROOT

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class LiveStack:
    """A gunicorn web process and a Celery worker sharing the test database and a private queue."""

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db = connection.settings_dict
        self.env = {
            **os.environ,
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            "PUBLIC_BASE_URL": self.base,
            "CELERY_TASK_DEFAULT_QUEUE": f"analysis-test-{uuid.uuid4().hex[:8]}",
            "CDS_VAR_DIR": str(tmp),
            # Plain HTTP on loopback, clients with shared secrets: the production defaults (HTTPS
            # redirect, SMART private_key_jwt only) do not apply to a local stack.
            "SECURE_SSL_REDIRECT": "false",
            "OAUTH_ALLOW_CLIENT_SECRET": "true",
            **(env or {}),
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
