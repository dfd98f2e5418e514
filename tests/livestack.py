"""A live service stack for tests: gunicorn and a Celery worker on the test database and a private queue.

The processes are separate from the test, so what they see is what a deployment sees: real HTTP,
a real broker, real PostgreSQL (pytest-django's test database; use ``django_db(transaction=True)``).
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

from django.db import connection

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


class LiveStack:
    """A gunicorn web process and a Celery worker sharing the test database and a private queue."""

    def __init__(self, tmp: Path, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        db = connection.settings_dict
        self.env = live_env(
            database_url=f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
            base_url=self.base,
            queue=f"analysis-test-{uuid.uuid4().hex[:8]}",
            CDS_VAR_DIR=str(tmp),
            **(env or {}),
        )
        self.logs = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> None:
        self.processes.append(spawn(web_command(self.port), self.env, self.logs / "web.log"))
        queue = self.env["CELERY_TASK_DEFAULT_QUEUE"]
        self.processes.append(spawn(worker_command(queue), self.env, self.logs / "worker.log"))
        wait_for_health(self.base, timeout_s=60, log=self.logs / "web.log")

    def token(self, scopes: str = "system/*.cruds") -> str:
        return client_token(create_api_client(self.env, "live-test", scopes))

    def stop(self) -> None:
        stop_processes(self.processes, timeout_s=15)
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
