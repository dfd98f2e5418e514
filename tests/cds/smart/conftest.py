"""A SMART authorization server (an EHR's, in miniature) that the launch tests run on loopback.

It serves what an EHR launch uses: ``.well-known/smart-configuration`` under its FHIR base,
OpenID discovery and a JWKS at its issuer, an authorize endpoint that signs in a preset clinician
and redirects back with a code, a token endpoint that checks the PKCE verifier, and ``Patient``
reads with the access token. Tests change ``SmartServer`` fields to make it misbehave.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.cds.review.conftest import analysed_ecg, flagged_review  # noqa: F401 - fixtures reused here

CLIENT_ID = "ecg-review-app"
PRACTITIONER = "Practitioner/dr-lee"
EHR_PATIENT_ID = "ehr-patient-7"


@dataclass
class SmartServer:
    """The EHR's authorization server state; ``iss`` is its FHIR base, ``issuer`` its OpenID issuer."""

    port: int = 0
    fhir_user: str = PRACTITIONER
    patient_identifier: dict[str, str] = field(
        default_factory=lambda: {"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"}
    )
    alg: str = "RS256"
    pkce_methods: list[str] = field(default_factory=lambda: ["S256"])
    id_token_aud: str = CLIENT_ID
    sign_with_other_key: bool = False
    launches: dict[str, str] = field(default_factory=dict)  # launch id -> the card's appContext
    codes: dict[str, dict[str, Any]] = field(default_factory=dict)
    tokens: set[str] = field(default_factory=set)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = {
            "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
            "ES384": ec.generate_private_key(ec.SECP384R1()),
        }
        self.other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def iss(self) -> str:
        return f"{self.issuer}/fhir"

    def launch(self, app_context: str = "") -> str:
        """Return a new EHR launch id (what the EHR appends to the card's smart link) bound to ``app_context``."""
        launch_id = secrets.token_hex(8)
        self.launches[launch_id] = app_context
        return launch_id

    def jwks(self) -> dict[str, Any]:
        keys = []
        for alg, key in self.keys.items():
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": alg.lower(), "alg": alg, "use": "sig"})
        return {"keys": keys}

    def id_token(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "sub": "dr-lee",
            "aud": self.id_token_aud,
            "iat": now,
            "exp": now + 300,
            "fhirUser": self.fhir_user,
        }
        key = self.other_key if self.sign_with_other_key else self.keys[self.alg]
        return jwt.encode(claims, key, algorithm=self.alg, headers={"kid": self.alg.lower()})

    # --- endpoints -------------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict[str, str], headers: Any) -> tuple[int, dict[str, str], Any]:
        if method == "GET" and path == "/fhir/.well-known/smart-configuration":
            return 200, {}, {
                "issuer": self.issuer,
                "jwks_uri": f"{self.issuer}/jwks",
                "authorization_endpoint": f"{self.issuer}/authorize",
                "token_endpoint": f"{self.issuer}/token",
                "grant_types_supported": ["authorization_code"],
                "code_challenge_methods_supported": self.pkce_methods,
                "capabilities": ["launch-ehr", "client-public", "sso-openid-connect", "context-ehr-patient"],
                "scopes_supported": ["openid", "fhirUser", "launch", "patient/Patient.rs"],
            }  # fmt: skip
        if method == "GET" and path == "/.well-known/openid-configuration":
            return 200, {}, {"issuer": self.issuer, "jwks_uri": f"{self.issuer}/jwks"}
        if method == "GET" and path == "/jwks":
            return 200, {}, self.jwks()
        if method == "GET" and path == "/authorize":
            return self._authorize(query)
        if method == "POST" and path == "/token":
            return self._token(query)
        if method == "GET" and path == f"/fhir/Patient/{EHR_PATIENT_ID}":
            if headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
                return 401, {}, {"resourceType": "OperationOutcome"}
            return 200, {}, {"resourceType": "Patient", "id": EHR_PATIENT_ID, "identifier": [self.patient_identifier]}
        return 404, {}, {"error": "not found"}

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.authorize_requests.append(query)
        ok = (
            query.get("response_type") == "code"
            and query.get("client_id") == CLIENT_ID
            and query.get("aud") == self.iss
            and query.get("launch") in self.launches
            and query.get("code_challenge_method") == "S256"
            and query.get("code_challenge")
        )
        if not ok:
            return 400, {}, {"error": "invalid_request"}
        code = secrets.token_urlsafe(16)
        self.codes[code] = {**query, "app_context": self.launches[query["launch"]]}
        location = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
        return 302, {"Location": location}, None

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        self.token_requests.append(form)
        grant = self.codes.pop(form.get("code", ""), None)
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if (
            grant is None
            or form.get("grant_type") != "authorization_code"
            or form.get("client_id") != CLIENT_ID
            or form.get("redirect_uri") != grant["redirect_uri"]
            or challenge != grant["code_challenge"]
        ):
            return 400, {}, {"error": "invalid_grant"}
        access_token = secrets.token_urlsafe(16)
        self.tokens.add(access_token)
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 300,
            "scope": grant["scope"],
            "id_token": self.id_token(),
            "patient": EHR_PATIENT_ID,
        }
        if grant["app_context"]:
            body["appContext"] = grant["app_context"]  # CDS Hooks 2.0: the card's appContext, passed through
        return 200, {}, body


@pytest.fixture
def smart_server() -> Iterator[SmartServer]:
    """Start the EHR's SMART authorization server on a loopback port; stop it after the test."""
    state = SmartServer()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, method: str) -> None:
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            if method == "POST":
                length = int(self.headers.get("Content-Length") or 0)
                query = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            status, headers, body = state.handle(method, url.path, query, self.headers)
            payload = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            for name, value in {"Content-Type": "application/json", **headers}.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 - the base class's name
            self._answer("GET")

        def do_POST(self) -> None:  # noqa: N802 - the base class's name
            self._answer("POST")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - signature of the base class
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
