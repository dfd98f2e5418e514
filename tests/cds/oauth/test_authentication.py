"""Bearer-token authentication of API requests, against tiny views and the real FHIR routes."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.test import Client

from cds.oauth.services import CreatedApiClient

pytestmark = pytest.mark.django_db

WHOAMI = "/fhir/_test/whoami"


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def assert_refused(response: Any, *, challenge: str = 'Bearer realm="fhir", error="invalid_token"') -> None:
    assert response.status_code == 401, response.content
    assert response["WWW-Authenticate"] == challenge
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["code"] == "login"


def claims_for(created: CreatedApiClient, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": settings.PUBLIC_BASE_URL,
        "sub": created.client.client_id,
        "scope": created.client.scopes,
        "iat": now,
        "exp": now + 60,
        "jti": "test",
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


@pytest.fixture
def created(make_api_client: Callable[..., CreatedApiClient]) -> CreatedApiClient:
    return make_api_client(scopes="system/Observation.crs system/Patient.read", name="EHR engine")


@pytest.mark.urls("tests.cds.oauth.urls_for_tests")
class TestIsolatedViews:
    def test_it_authenticates_a_valid_token(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        response = client.get(WHOAMI, **bearer(token_for(created)))
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["client_id"] == created.client.client_id
        assert body["name"] == "EHR engine"
        assert body["scopes"] == ["system/Observation.crs", "system/Patient.read"]
        assert body["claims"]["sub"] == created.client.client_id

    def test_it_looks_the_client_up_with_one_query(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str], django_assert_num_queries: Any
    ) -> None:
        token = token_for(created)
        with django_assert_num_queries(1):
            assert client.get(WHOAMI, **bearer(token)).status_code == 200

    def test_it_answers_401_with_a_challenge_without_credentials(self, client: Client) -> None:
        assert_refused(client.get(WHOAMI), challenge='Bearer realm="fhir"')

    def test_it_ignores_other_schemes(self, client: Client) -> None:
        response = client.get(WHOAMI, HTTP_AUTHORIZATION="Basic " + base64.b64encode(b"a:b").decode())
        assert_refused(response, challenge='Bearer realm="fhir"')

    @pytest.mark.parametrize("header", ["Bearer", "Bearer a b", "Bearer not-a-jwt"])
    def test_it_refuses_a_malformed_bearer_header(self, client: Client, header: str) -> None:
        assert_refused(client.get(WHOAMI, HTTP_AUTHORIZATION=header))

    def test_it_refuses_an_expired_token(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str], time_machine: Any
    ) -> None:
        issued_at = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        time_machine.move_to(issued_at, tick=False)
        token = token_for(created)
        lifetime = settings.OAUTH_TOKEN_LIFETIME_SECONDS
        time_machine.move_to(issued_at + timedelta(seconds=lifetime - 1), tick=False)
        assert client.get(WHOAMI, **bearer(token)).status_code == 200
        # Past the expiry and the few seconds of clock-skew leeway.
        time_machine.move_to(issued_at + timedelta(seconds=lifetime + 10), tick=False)
        response = client.get(WHOAMI, **bearer(token))
        assert_refused(response)
        assert "expired" in response.json()["issue"][0]["diagnostics"]

    def test_it_refuses_a_tampered_token(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        header, payload, signature = token_for(created).split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["scope"] = "system/*.*"
        forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        assert_refused(client.get(WHOAMI, **bearer(f"{header}.{forged}.{signature}")))

    @pytest.mark.parametrize(
        ("key", "algorithm", "overrides"),
        [
            ("another-key-of-someone-else", "HS256", {}),
            (None, "none", {}),
            ("SIGNING_KEY", "HS512", {}),
            ("SIGNING_KEY", "HS256", {"iss": "https://elsewhere.example"}),
            ("SIGNING_KEY", "HS256", {"jti": None}),
            ("SIGNING_KEY", "HS256", {"scope": None}),
            ("SIGNING_KEY", "HS256", {"iat": int(time.time()) + 3600}),
        ],
    )
    def test_it_refuses_tokens_it_did_not_issue(
        self, client: Client, created: CreatedApiClient, key: str | None, algorithm: str, overrides: dict[str, Any]
    ) -> None:
        signing_key = settings.OAUTH_TOKEN_SIGNING_KEY if key == "SIGNING_KEY" else key
        token = jwt.encode(claims_for(created, **overrides), signing_key, algorithm=algorithm)
        assert_refused(client.get(WHOAMI, **bearer(token)))

    def test_it_accepts_a_token_it_would_have_issued(self, client: Client, created: CreatedApiClient) -> None:
        token = jwt.encode(claims_for(created), settings.OAUTH_TOKEN_SIGNING_KEY, algorithm="HS256")
        assert client.get(WHOAMI, **bearer(token)).status_code == 200

    def test_it_refuses_the_token_of_a_deactivated_client(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        token = token_for(created)
        created.client.is_active = False
        created.client.save()
        assert_refused(client.get(WHOAMI, **bearer(token)))

    def test_it_refuses_the_token_of_a_deleted_client(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        token = token_for(created)
        created.client.delete()
        assert_refused(client.get(WHOAMI, **bearer(token)))

    def test_it_enforces_the_token_scope(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        token = token_for(created, scope="system/Observation.r")
        assert client.get("/fhir/_test/Observation/r", **bearer(token)).status_code == 200
        response = client.get("/fhir/_test/Observation/c", **bearer(token))
        assert response.status_code == 403
        issue = response.json()["issue"][0]
        assert (issue["code"], issue["diagnostics"]) == ("forbidden", "scope does not allow c on Observation")

    def test_it_drops_scopes_withdrawn_since_the_token_was_issued(
        self, client: Client, created: CreatedApiClient, token_for: Callable[..., str]
    ) -> None:
        token = token_for(created)
        created.client.scopes = "system/Patient.read"
        created.client.save()
        assert client.get(WHOAMI, **bearer(token)).json()["scopes"] == ["system/Patient.read"]
        assert client.get("/fhir/_test/Observation/r", **bearer(token)).status_code == 403


def test_it_closes_the_real_fhir_routes_to_anonymous_callers(client: Client) -> None:
    assert_refused(client.get("/fhir/Patient?identifier=x"), challenge='Bearer realm="fhir"')


def test_it_applies_scopes_on_the_real_fhir_routes(
    client: Client, make_api_client: Callable[..., CreatedApiClient], token_for: Callable[..., str]
) -> None:
    token = token_for(make_api_client(scopes="system/Observation.rs"))
    response = client.get("/fhir/Patient?identifier=x", **bearer(token))
    assert response.status_code == 403, response.content
    assert response.json()["issue"][0]["code"] == "forbidden"
    assert client.get("/fhir/Observation?identifier=x", **bearer(token)).status_code == 200
