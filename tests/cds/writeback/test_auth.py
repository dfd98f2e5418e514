"""Authenticated write-back: OAuth2 client credentials with a shared secret, and SMART private_key_jwt.

Two counterparts: sekmet's own SMART token endpoint and bearer check (a real third-party
implementation), and a loopback token endpoint written here that verifies each assertion strictly
(algorithm, key id, audience, lifetime, replayed ``jti``) and counts what it issues.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from unittest import mock
from urllib.parse import parse_qs

import jwt
import pytest
import time_machine
from django.utils import timezone

from cds.writeback.client import ASSERTION_TYPE, WritebackConfig, WritebackError, access_token, client_assertion
from cds.writeback.models import OutboxMessage
from cds.writeback.services import outbox_deliver, outbox_enqueue
from tests.cds.writeback.conftest import (
    SMART_SECRET,
    ClientKey,
    Loopback,
    Reply,
    Request,
    Sekmet,
    basic_credentials,
    forward,
    outcome,
)
from tests.cds.writeback.helpers import identifier, result_bundle

pytestmark = pytest.mark.django_db
CLIENT_ID = "ecg-cds"
KEY_ID = "ecg-cds-key-1"
SECRET = "s3cret:with&odd=chars"  # noqa: S105 - a test credential; checks form-encoding before Basic


@dataclass
class TokenEndpoint:
    """A strict OAuth2 token endpoint: SMART Backend Services assertions, or client_secret_basic."""

    url: str = ""
    public_pem: str = ""
    algorithm: str = "RS384"
    expires_in: int = 300
    issued: list[str] = field(default_factory=list)
    seen_jti: set[str] = field(default_factory=set)
    counter: Any = field(default_factory=itertools.count)

    def __call__(self, request: Request) -> Reply:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "system/*.crus":
            return Reply(400, {"error": "invalid_request", "error_description": f"bad form {form}"})
        if "Authorization" in request.headers:
            if basic_credentials(request.headers["Authorization"]) != (CLIENT_ID, SECRET):
                return Reply(401, {"error": "invalid_client", "error_description": "wrong secret"})
        else:
            problem = self.assertion_problem(form)
            if problem:
                return Reply(401, {"error": "invalid_client", "error_description": problem})
        token = f"token-{next(self.counter)}"
        self.issued.append(token)
        return Reply(200, {"access_token": token, "token_type": "bearer", "expires_in": self.expires_in})

    def assertion_problem(self, form: dict[str, str]) -> str | None:
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            return "client_assertion_type must be jwt-bearer"
        assertion = form.get("client_assertion", "")
        header = jwt.get_unverified_header(assertion)
        if header.get("alg") != self.algorithm or header.get("kid") != KEY_ID:
            return f"unexpected header {header}"
        try:
            claims = jwt.decode(
                assertion,
                self.public_pem,
                algorithms=[self.algorithm],
                audience=self.url,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
        except jwt.PyJWTError as exc:
            return f"assertion rejected: {exc}"
        if claims["iss"] != CLIENT_ID or claims["sub"] != CLIENT_ID:
            return "iss and sub must be the client id"
        if claims["exp"] > time.time() + 300:
            return "exp more than 5 minutes ahead"
        if claims["jti"] in self.seen_jti:
            return "jti already used"
        self.seen_jti.add(claims["jti"])
        return None


@dataclass
class BearerEhr:
    """A FHIR endpoint that accepts only tokens the token endpoint issued and not revoked, then relays to sekmet."""

    tokens: TokenEndpoint
    sekmet: Sekmet
    revoked: set[str] = field(default_factory=set)

    def __call__(self, request: Request) -> Reply:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if token not in self.tokens.issued or token in self.revoked:
            return Reply(401, outcome("login", "invalid or revoked token"), {"WWW-Authenticate": "Bearer"})
        return forward(self.sekmet, request)


@pytest.fixture
def oauth(
    writeback_settings: Any, sekmet: Sekmet, loopback: Callable[..., Loopback], client_keys: dict[str, ClientKey]
) -> Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]]:
    """Return a starter of (token endpoint, EHR) for an auth method, with the settings pointing at them."""

    def start(auth: str, algorithm: str = "RS384") -> tuple[TokenEndpoint, BearerEhr, Loopback]:
        tokens = TokenEndpoint(public_pem=client_keys[algorithm].public_pem, algorithm=algorithm)
        token_server = loopback(tokens)
        tokens.url = f"{token_server.url}/oauth/token"
        ehr = BearerEhr(tokens, sekmet)
        ehr_server = loopback(ehr)
        writeback_settings.WRITEBACK_FHIR_BASE_URL = f"{ehr_server.url}/fhir"
        writeback_settings.WRITEBACK_AUTH = auth
        writeback_settings.WRITEBACK_TOKEN_URL = tokens.url
        writeback_settings.WRITEBACK_CLIENT_ID = CLIENT_ID
        writeback_settings.WRITEBACK_CLIENT_SECRET = SECRET
        writeback_settings.WRITEBACK_PRIVATE_KEY = client_keys[algorithm].private_pem
        writeback_settings.WRITEBACK_KEY_ID = KEY_ID
        writeback_settings.WRITEBACK_ALGORITHM = algorithm
        writeback_settings.WRITEBACK_SCOPE = "system/*.crus"
        return tokens, ehr, ehr_server

    return start


def deliver_new() -> tuple[str, OutboxMessage]:
    job_key, bundle = result_bundle()
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.delay", autospec=True):
        message = outbox_enqueue(key=f"test:{job_key}", bundle=bundle)
    with mock.patch("cds.writeback.tasks.outbox_message_deliver.apply_async", autospec=True):
        delivered = outbox_deliver(message_id=message.pk)
    assert delivered is not None
    return job_key, delivered


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_it_authenticates_with_a_signed_assertion_and_caches_the_token(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]], sekmet: Sekmet, algorithm: str
) -> None:
    tokens, _, ehr = oauth("private_key_jwt", algorithm)
    job_key, first = deliver_new()
    _, second = deliver_new()
    assert (first.status, second.status) == ("delivered", "delivered"), (first.last_error, second.last_error)
    assert tokens.issued == ["token-0"]  # one token for both deliveries
    assert [r.headers["Authorization"] for r in ehr.requests] == ["Bearer token-0"] * 2
    assert len(sekmet.search("DiagnosticReport", identifier=identifier(f"{job_key}-report"))) == 1


def test_it_authenticates_with_a_client_secret(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]],
) -> None:
    tokens, _, _ = oauth("client_secret")
    _, message = deliver_new()
    assert message.status == OutboxMessage.Status.DELIVERED, message.last_error
    assert tokens.issued == ["token-0"] and tokens.seen_jti == set()


def test_it_renews_the_token_shortly_before_it_expires(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]],
) -> None:
    tokens, _, ehr = oauth("private_key_jwt")
    tokens.expires_in = 120
    deliver_new()
    with time_machine.travel(timezone.now() + timedelta(seconds=85), tick=True):
        deliver_new()  # 35 s of life left: still used
    with time_machine.travel(timezone.now() + timedelta(seconds=95), tick=True):
        deliver_new()  # under 30 s left: renewed with a fresh assertion
    assert tokens.issued == ["token-0", "token-1"] and len(tokens.seen_jti) == 2
    assert [r.headers["Authorization"] for r in ehr.requests] == ["Bearer token-0"] * 2 + ["Bearer token-1"]


def test_it_drops_a_refused_token_and_retries_once(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]],
) -> None:
    tokens, bearer, ehr = oauth("client_secret")
    deliver_new()
    bearer.revoked.add("token-0")  # the EHR revoked it before it expired
    _, message = deliver_new()
    assert message.status == OutboxMessage.Status.DELIVERED and message.attempts == 1
    assert tokens.issued == ["token-0", "token-1"]
    assert [r.headers["Authorization"] for r in ehr.requests] == ["Bearer token-0", "Bearer token-0", "Bearer token-1"]


def test_it_fails_when_a_fresh_token_is_refused_too(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]],
) -> None:
    tokens, bearer, ehr = oauth("client_secret")
    bearer.revoked.update({"token-0", "token-1", "token-2"})
    _, message = deliver_new()
    assert message.status == OutboxMessage.Status.FAILED and message.attempts == 1
    assert message.last_error == "HTTP 401: error login: invalid or revoked token"
    assert len(ehr.requests) == 2 and tokens.issued == ["token-0", "token-1"]


def test_it_fails_at_once_when_the_token_endpoint_refuses_the_client(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]], writeback_settings: Any
) -> None:
    oauth("client_secret")
    writeback_settings.WRITEBACK_CLIENT_SECRET = "wrong"  # noqa: S105
    _, message = deliver_new()
    assert message.status == OutboxMessage.Status.FAILED
    assert message.last_error == "token endpoint answered HTTP 401: invalid_client: wrong secret"


def test_it_retries_when_the_token_endpoint_is_down(
    oauth: Callable[..., tuple[TokenEndpoint, BearerEhr, Loopback]],
    loopback: Callable[..., Loopback],
    writeback_settings: Any,
) -> None:
    oauth("private_key_jwt")
    down = loopback(lambda request: Reply(503, {"error": "temporarily_unavailable"}))
    writeback_settings.WRITEBACK_TOKEN_URL = f"{down.url}/oauth/token"
    _, message = deliver_new()
    assert message.status == OutboxMessage.Status.PENDING
    assert message.last_error == "token endpoint answered HTTP 503: temporarily_unavailable"


def test_it_signs_a_fresh_short_lived_assertion_each_time(client_keys: dict[str, ClientKey]) -> None:
    key = client_keys["ES384"]
    config = WritebackConfig(
        base_url="http://127.0.0.1:9/fhir",
        auth="private_key_jwt",
        token_url="https://ehr.example.org/oauth/token",
        client_id=CLIENT_ID,
        private_key=key.private_pem,
        key_id=KEY_ID,
        algorithm="ES384",
    )
    first, second = client_assertion(config=config), client_assertion(config=config)
    assert jwt.get_unverified_header(first) == {"alg": "ES384", "kid": KEY_ID, "typ": "JWT"}
    claims = [jwt.decode(a, key.public_pem, algorithms=["ES384"], audience=config.token_url) for a in (first, second)]
    assert claims[0]["iss"] == claims[0]["sub"] == CLIENT_ID
    assert 0 < claims[0]["exp"] - time.time() <= 300
    assert claims[0]["jti"] != claims[1]["jti"]


@pytest.mark.parametrize(
    ("client_id", "auth", "algorithm"),
    [("ecg-cds-secret", "client_secret", "RS384"), ("ecg-cds-rs384", "private_key_jwt", "RS384")]
    + [("ecg-cds-es384", "private_key_jwt", "ES384")],
)
def test_it_writes_back_to_a_smart_protected_server(
    writeback_settings: Any,
    sekmet_smart: Sekmet,
    client_keys: dict[str, ClientKey],
    client_id: str,
    auth: str,
    algorithm: str,
) -> None:
    writeback_settings.WRITEBACK_FHIR_BASE_URL = sekmet_smart.base_url
    writeback_settings.WRITEBACK_AUTH = auth
    writeback_settings.WRITEBACK_TOKEN_URL = sekmet_smart.token_url
    writeback_settings.WRITEBACK_CLIENT_ID = client_id
    writeback_settings.WRITEBACK_CLIENT_SECRET = SMART_SECRET
    writeback_settings.WRITEBACK_PRIVATE_KEY = client_keys[algorithm].private_pem
    writeback_settings.WRITEBACK_KEY_ID = f"{client_id}-key"
    writeback_settings.WRITEBACK_ALGORITHM = algorithm
    writeback_settings.WRITEBACK_SCOPE = "system/*.crus"

    job_key, message = deliver_new()
    assert message.status == OutboxMessage.Status.DELIVERED, message.last_error
    assert len(sekmet_smart.search("DiagnosticReport", identifier=identifier(f"{job_key}-report"))) == 1
    # sekmet itself refuses an unauthenticated write, so the delivery above really used the token.
    anonymous = WritebackConfig(base_url=sekmet_smart.base_url, timeout_s=5)
    with pytest.raises(WritebackError, match="HTTP 401"):
        from cds.writeback.client import fhir_transaction_post

        fhir_transaction_post(config=anonymous, bundle=result_bundle()[1])
    assert access_token(config=WritebackConfig.from_settings()) is not None
