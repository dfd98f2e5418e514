"""Fixtures for the write-back tests: a real sekmet-fhir R4 server and small loopback HTTP servers.

sekmet runs as its own process from its own virtualenv (``var/venv-sekmet``, or ``$SEKMET_VENV``),
built on first use from ``sekmet-requirements.txt``: it needs fhirpathpy>=2, which pins
python-dateutil~=2.8 against our lock's 4.0.0. Loopback servers (threads on 127.0.0.1) play an EHR
that fails in scripted ways (500, slow answers, refused tokens) and a token endpoint that verifies
our assertions; when they let a request through, it goes on to sekmet.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from cds.writeback.client import access_tokens_clear
from deploy.livestack import free_port

REPO = Path(__file__).resolve().parents[3]
SEKMET_PINS = Path(__file__).with_name("sekmet-requirements.txt")
SEKMET_VENV = Path(os.environ.get("SEKMET_VENV", REPO / "var" / "venv-sekmet"))
READER_TOKEN = "sekmet-test-reader"  # static bearer token the tests use to read back from sekmet


def sekmet_executable() -> Path:
    """Return ``sekmet`` from its own venv, creating or repairing the venv from the pins first."""
    executable = SEKMET_VENV / "bin" / "sekmet"
    SEKMET_VENV.parent.mkdir(parents=True, exist_ok=True)
    # Several test runs may share a checkout: one builds the venv while the others wait.
    with (SEKMET_VENV.parent / f"{SEKMET_VENV.name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _sekmet_install(executable)
    return executable


def _sekmet_install(executable: Path) -> None:
    stamp = SEKMET_VENV / "pins.sha256"
    digest = hashlib.sha256(SEKMET_PINS.read_bytes()).hexdigest()
    if executable.exists() and stamp.exists() and stamp.read_text() == digest:
        return
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(SEKMET_VENV)], check=True)
    result = subprocess.run(
        [str(SEKMET_VENV / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        + ["-r", str(SEKMET_PINS)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode != 0:
        pytest.fail(f"could not install sekmet-fhir into {SEKMET_VENV}:\n{result.stderr[-3000:]}")
    stamp.write_text(digest)


@dataclass
class Sekmet:
    """A running ``sekmet serve`` process on 127.0.0.1 with its own data directory."""

    work_dir: Path
    server_auth: dict[str, Any] | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def root_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.root_url}/auth/token"

    def start(self, timeout_s: float = 30.0) -> Sekmet:
        executable = sekmet_executable()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        config = {
            "base_url": self.base_url,
            "port": self.port,
            "data_dir": str(self.work_dir / "data"),
            "own_private_key_path": str(self.work_dir / "keys" / "own.pem"),
            # The simulator would act on our review Task (it auto-fulfils Tasks); we want a plain store.
            "simulator": {"enabled": False},
            "log_inbound": False,
        }
        if self.server_auth:
            config["server_auth"] = self.server_auth
        (self.work_dir / "settings.yaml").write_text(yaml.safe_dump(config))
        log = (self.work_dir / "sekmet.log").open("wb")
        # Always --host 127.0.0.1: sekmet's default host is 0.0.0.0.
        command = [
            str(executable),
            "serve",
            "--config",
            "settings.yaml",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
        ]
        self.process = subprocess.Popen(command, cwd=self.work_dir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                requests.get(f"{self.base_url}/metadata", timeout=1)
                return self
            except requests.ConnectionError:
                time.sleep(0.1)
        self.stop()
        pytest.fail(f"sekmet did not start:\n{(self.work_dir / 'sekmet.log').read_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def get(self, path: str, **params: str) -> requests.Response:
        """GET ``[base]/path`` (with the static reader token when the server requires auth)."""
        headers = {"Accept": "application/fhir+json"}
        if self.server_auth:
            headers["Authorization"] = f"Bearer {READER_TOKEN}"
        return requests.get(f"{self.base_url}/{path}", params=params, headers=headers, timeout=10)

    def search(self, resource_type: str, **params: str) -> list[dict[str, Any]]:
        """Return the resources of a search (first page, up to 100)."""
        response = self.get(resource_type, _count="100", **params)
        assert response.status_code == 200, response.text
        return [entry["resource"] for entry in response.json().get("entry", [])]


@pytest.fixture(scope="session")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    """A real R4 server without auth, shared by the session (tests use distinct identifiers)."""
    server = Sekmet(tmp_path_factory.mktemp("sekmet")).start()
    yield server
    server.stop()


@dataclass(frozen=True)
class ClientKey:
    """A client's signing key pair as PEM, with the SMART algorithm it signs with."""

    algorithm: str
    private_pem: str
    public_pem: str


def client_key(algorithm: str) -> ClientKey:
    """Generate an RSA 2048 key (RS384) or an EC P-384 key (ES384)."""
    if algorithm == "RS384":
        private: Any = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        private = ec.generate_private_key(ec.SECP384R1())
    private_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public_pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return ClientKey(algorithm, private_pem, public_pem)


@pytest.fixture(scope="session")
def client_keys() -> dict[str, ClientKey]:
    """One key per SMART algorithm, shared by the session."""
    return {algorithm: client_key(algorithm) for algorithm in ("RS384", "ES384")}


SMART_SECRET = "sekmet-client-secret"  # noqa: S105 - a test credential


@pytest.fixture(scope="session")
def sekmet_smart(tmp_path_factory: pytest.TempPathFactory, client_keys: dict[str, ClientKey]) -> Iterator[Sekmet]:
    """A real R4 server that requires SMART Backend Services tokens from its own token endpoint.

    Clients: ``ecg-cds-rs384`` and ``ecg-cds-es384`` (private_key_jwt with the session keys) and
    ``ecg-cds-secret`` (client_secret_basic). Tests read back with a static bearer token.
    """
    work_dir = tmp_path_factory.mktemp("sekmet-smart")
    clients: list[dict[str, Any]] = [
        {"client_id": "ecg-cds-secret", "client_secret": SMART_SECRET, "scopes": "system/*.cruds"}
    ]
    for algorithm, key in client_keys.items():
        public_path = work_dir / f"{algorithm}.pub.pem"
        public_path.write_text(key.public_pem)
        clients.append(
            {
                "client_id": f"ecg-cds-{algorithm.lower()}",
                "public_key_path": str(public_path),
                "scopes": "system/*.cruds",
            }
        )
    auth = {"types": ["smart", "bearer"], "tokens": [READER_TOKEN], "smart_clients": clients, "token_lifetime": 300}
    server = Sekmet(work_dir, server_auth=auth).start()
    yield server
    server.stop()


# --- loopback HTTP servers ------------------------------------------------------------------------


@dataclass
class Request:
    """One request a loopback server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    """What a loopback handler answers; ``delay_s`` sleeps first (a slow EHR)."""

    status: int
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


Handler = Callable[[Request], Reply]


class Loopback:
    """A threaded HTTP server on 127.0.0.1 that answers with ``handler`` and records every request."""

    def __init__(self, handler: Handler, port: int = 0) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        outer = self

        class _Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
                outer.requests.append(request)
                reply = outer.handler(request)
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                body = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
                try:
                    self.send_response(reply.status)
                    headers = {"Content-Type": "application/fhir+json", **reply.headers}
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away, which is the point of a slow reply

            do_GET = do_POST = _serve  # noqa: N815 - http.server's naming

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), _Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def loopback() -> Iterator[Callable[..., Loopback]]:
    """Return a starter of loopback servers; all are closed after the test."""
    started: list[Loopback] = []

    def start(handler: Handler, port: int = 0) -> Loopback:
        server = Loopback(handler, port)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def forward(target: Sekmet, request: Request) -> Reply:
    """Relay ``request`` to sekmet's FHIR base (the loopback EHR has recovered)."""
    response = requests.post(
        target.base_url, data=request.body, headers={"Content-Type": "application/fhir+json"}, timeout=30
    )
    return Reply(response.status_code, response.content)


def outcome(code: str, diagnostics: str) -> dict[str, Any]:
    """Return an OperationOutcome with one error issue."""
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": diagnostics}],
    }


def basic_credentials(header: str) -> tuple[str, str]:
    """Decode an ``Authorization: Basic`` header into (client_id, secret)."""
    from urllib.parse import unquote_plus

    client_id, _, secret = base64.b64decode(header.removeprefix("Basic ")).decode().partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


@pytest.fixture(autouse=True)
def _fresh_tokens() -> Iterator[None]:
    """Start every test with an empty access-token cache (it is process-wide)."""
    access_tokens_clear()
    yield
    access_tokens_clear()


@pytest.fixture
def writeback_settings(settings: Any) -> Any:
    """Enable write-back with fast, test-sized timings; tests point it at their server."""
    settings.WRITEBACK_ENABLED = True
    settings.WRITEBACK_AUTH = "none"
    settings.WRITEBACK_TIMEOUT_S = 5.0
    settings.WRITEBACK_MAX_ATTEMPTS = 3
    settings.WRITEBACK_BACKOFF_BASE_S = 10.0
    settings.WRITEBACK_BACKOFF_MAX_S = 100.0
    settings.WRITEBACK_SENDING_TIMEOUT_S = 60
    settings.WRITEBACK_SWEEP_INTERVAL_S = 60.0
    return settings
