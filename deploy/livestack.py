"""Helpers shared by the benchmarks (``bench/``) and the live tests (``tests/``) that run the service.

One place for what every local stack does: pick a free port, build the web and worker command
lines and the environment of a plain-HTTP loopback stack, start and stop the processes, wait for
``/healthz``, and get an access token for an API client created with ``manage.py``. Standard
library and ``requests`` only; ``cds`` and ``inference`` never import this module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def live_env(*, database_url: str, base_url: str, queue: str, **overrides: str) -> dict[str, str]:
    """Return the environment of a local web + worker stack (this process's, plus the stack's settings).

    Plain HTTP on loopback, clients with shared secrets: the production defaults (HTTPS redirect,
    SMART private_key_jwt only) do not apply to a local stack. ``overrides`` come last.
    """
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "PUBLIC_BASE_URL": base_url,
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        # One private queue for everything (production splits analysis, write-back, sweeps and shadow).
        "CELERY_WRITEBACK_QUEUE": queue,
        "CELERY_MAINTENANCE_QUEUE": queue,
        "CELERY_SHADOW_QUEUE": queue,
        "SECURE_SSL_REDIRECT": "false",
        "OAUTH_ALLOW_CLIENT_SECRET": "true",
        "ADMIN_OTP_REQUIRED": "false",  # loopback test stacks log clinicians in with passwords alone
        "ADMIN_OTP_LOCAL_OPT_OUT": "true",
        **overrides,
    }


def web_command(port: int, workers: int = 2) -> list[str]:
    """Return the gunicorn command line serving the app on 127.0.0.1:``port``."""
    return [str(BIN / "gunicorn"), "cds.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", str(workers)]


def worker_command(queue: str, *, concurrency: int | None = None, loglevel: str = "INFO") -> list[str]:
    """Return the Celery worker command line for ``queue`` (``concurrency`` None: the solo pool)."""
    pool = ["--pool", "solo"] if concurrency is None else ["--concurrency", str(concurrency)]
    return [str(BIN / "celery"), "-A", "cds", "worker", *pool, "-Q", queue, "--loglevel", loglevel]


def spawn(
    command: list[str], env: Mapping[str, str], log: Path | None, *, new_session: bool = False
) -> subprocess.Popen[bytes]:
    """Start ``command`` in the repository, its output appended to ``log`` (None: discarded)."""
    output = log.open("ab") if log is not None else subprocess.DEVNULL
    return subprocess.Popen(
        command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=new_session
    )


def stop_processes(processes: Iterable[subprocess.Popen[bytes]], *, timeout_s: float, group: bool = False) -> None:
    """SIGTERM each running process (its process group when ``group``), SIGKILL what outlives ``timeout_s``."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            if group:
                os.killpg(process.pid, signal.SIGTERM)
            else:
                process.terminate()
    for process in processes:
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if group:
                os.killpg(process.pid, signal.SIGKILL)
            else:
                process.kill()


def wait_for_health(base_url: str, *, timeout_s: float = 60, log: Path | None = None) -> None:
    """Poll ``base_url``/healthz until it answers 200; raise (with the tail of ``log``) after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-2000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"web did not start within {timeout_s:.0f} s: {tail}")


def manage(env: Mapping[str, str], *args: str) -> str:
    """Run ``manage.py`` with ``args`` in ``env``; return its stdout (raise if it fails)."""
    return subprocess.run(
        [str(BIN / "python"), str(REPO / "manage.py"), *args],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def create_api_client(env: Mapping[str, str], name: str, scopes: str | None = None) -> dict[str, Any]:
    """Create an API client with ``manage.py create_api_client``; return its credentials (token_url, id, secret)."""
    credentials: dict[str, Any] = json.loads(
        manage(env, "create_api_client", name, "--organization", "live", *(["--scopes", scopes] if scopes else []))
    )
    return credentials


def client_token(credentials: Mapping[str, Any]) -> str:
    """Exchange API client credentials for an access token (client_credentials grant, HTTP Basic)."""
    response = requests.post(
        credentials["token_url"],
        data={"grant_type": "client_credentials"},
        auth=(credentials["client_id"], credentials["client_secret"]),
        timeout=10,
    )
    response.raise_for_status()
    return str(response.json()["access_token"])


def percentile(values: list[float], q: float) -> float:
    """Return the ``q``-th percentile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]
