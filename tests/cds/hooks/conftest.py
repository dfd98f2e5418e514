"""Fixtures for the CDS Hooks tests: analysed ECGs, and a CDS client (EHR) that the tests run themselves.

The EHR signs its hook JWTs with its own private key and serves its JWKS from a loopback HTTP
server; for the fhirServer fallback it has a real FHIR R4 server (sekmet, as in the write-back tests).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization

from cds.analysis.models import AnalysisJob
from cds.core.services import organization_get_or_create
from cds.hooks.client_keys import jwks_cache_clear
from cds.hooks.models import CdsClient
from cds.hooks.services import cds_client_register
from cds.pipeline.analysis import analysis_results_store
from tests.cds.analysis.test_results_store import make_result
from tests.cds.writeback.conftest import READER_TOKEN, ClientKey, Loopback, Reply, Sekmet, client_key
from tests.cds.writeback.conftest import loopback as writeback_loopback
from tests.conftest import ORGANIZATION

# Loopback servers playing an EHR's FHIR server that fails in scripted ways (the write-back tests' fixture).
loopback = writeback_loopback

SERVICE_URL = "http://testserver/cds-services/ecg-ai-findings"  # PUBLIC_BASE_URL is http://testserver in tests


@pytest.fixture
def analysed_patient(service_account: Any, ecg_factory: Any, patient_resource: dict[str, Any]) -> str:
    """A patient of ORGANIZATION (MRN-0001) with two analysed ECGs: one flagged (2024-03-01), one not."""
    patient_id = service_account.post("/fhir/Patient", patient_resource).json()["id"]
    for ecg_id, score, date in ((63, 2.5, "2024-03-01T10:00:00Z"), (9, 0.3, "2024-01-01T10:00:00Z")):
        obs = ecg_factory(ecg_id, patient_reference=f"Patient/{patient_id}", effective=date)
        observation_id = service_account.post("/fhir/Observation", obs).json()["id"]
        job = AnalysisJob.objects.get(recording__logical_id=observation_id)
        analysis_results_store(job=job, result=make_result(score=score))
    return patient_id


def public_jwk(key: ClientKey, kid: str) -> dict[str, Any]:
    """Return the public JWK of ``key`` named ``kid``."""
    public = serialization.load_pem_public_key(key.public_pem.encode())
    algorithm = jwt.algorithms.RSAAlgorithm if key.algorithm == "RS384" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(public, as_dict=True)  # type: ignore[arg-type]
    return {**jwk, "kid": kid, "alg": key.algorithm, "use": "sig"}


@dataclass
class Ehr:
    """A CDS client: its signing keys, the JWKS it serves (mutable: rotation) and its registration."""

    iss: str
    key: ClientKey
    kid: str
    jwks_server: Loopback
    served_keys: list[dict[str, Any]]
    registration: CdsClient | None = None
    extra_keys: dict[str, ClientKey] = field(default_factory=dict)

    @property
    def jwks_url(self) -> str:
        return f"{self.jwks_server.url}/.well-known/jwks.json"

    def token(
        self,
        *,
        claims: dict[str, Any] | None = None,
        header: dict[str, Any] | None = None,
        key: ClientKey | None = None,
    ) -> str:
        """Return a hook JWT: aud = the service, 60 s lifetime, fresh jti; ``claims``/``header`` override."""
        now = int(time.time())
        body = {"iss": self.iss, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": str(uuid.uuid4())}
        body.update(claims or {})
        signing = key or self.key
        headers = {"kid": self.kid, "typ": "JWT", "jku": self.jwks_url, **(header or {})}
        return jwt.encode(body, signing.private_pem, algorithm=signing.algorithm, headers=headers)

    def call(self, client: Any, body: dict[str, Any], token: str | None = None) -> Any:
        """POST ``body`` to the service with ``token`` (default: a fresh valid JWT)."""
        return client.post(
            "/cds-services/ecg-ai-findings",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {token or self.token()}",
        )


@pytest.fixture(scope="session")
def ehr_keys() -> dict[str, ClientKey]:
    """The EHR's signing keys: one per CDS Hooks algorithm, shared by the session."""
    return {algorithm: client_key(algorithm) for algorithm in ("RS384", "ES384")}


@pytest.fixture
def make_ehr(ehr_keys: dict[str, ClientKey], settings: Any) -> Iterator[Callable[..., Ehr]]:
    """Return a starter of registered EHRs, each serving its JWKS on its own loopback server."""
    settings.CDS_HOOKS_JWKS_TIMEOUT_S = 2.0
    jwks_cache_clear()
    started: list[Loopback] = []

    def start(
        *,
        algorithm: str = "RS384",
        organization: str = ORGANIZATION,
        fhir_servers: list[str] | None = None,
        iss: str | None = None,
    ) -> Ehr:
        key = ehr_keys[algorithm]
        served: list[dict[str, Any]] = [public_jwk(key, "ehr-key-1")]
        server = Loopback(lambda request: Reply(200, {"keys": served}, {"Content-Type": "application/json"}))
        started.append(server)
        ehr = Ehr(
            iss=iss or f"https://ehr-{uuid.uuid4().hex[:8]}.example/cds-client",
            key=key,
            kid="ehr-key-1",
            jwks_server=server,
            served_keys=served,
        )
        org, _ = organization_get_or_create(slug=organization)
        ehr.registration = cds_client_register(
            name="Test EHR", iss=ehr.iss, organization=org, jwks_url=ehr.jwks_url, fhir_servers=fhir_servers
        )
        return ehr

    yield start
    for server in started:
        server.close()
    jwks_cache_clear()


@pytest.fixture(scope="session")
def ehr_fhir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    """The EHR's FHIR server: a real R4 server that requires a bearer token (the static reader token)."""
    auth = {"types": ["bearer"], "tokens": [READER_TOKEN]}
    server = Sekmet(tmp_path_factory.mktemp("sekmet-ehr"), server_auth=auth).start()
    yield server
    server.stop()
