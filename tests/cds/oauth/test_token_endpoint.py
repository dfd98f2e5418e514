"""``POST /auth/token``: the client-credentials grant and its RFC 6749 errors."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import jwt
import pytest
from django.conf import settings
from django.test import Client

from cds.oauth.services import CreatedApiClient

pytestmark = pytest.mark.django_db

TOKEN_URL = "/auth/token"
GRANT = {"grant_type": "client_credentials"}


def basic(client_id: str, client_secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{client_secret}".encode()).decode()


def assert_oauth_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response["Cache-Control"] == "no-store"


def test_it_issues_a_token_to_a_client_secret_post_client(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client(scopes="system/Patient.crs system/Observation.crs")
    response = request_token(created)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    assert response["Pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == settings.OAUTH_TOKEN_LIFETIME_SECONDS
    assert body["scope"] == "system/Patient.crs system/Observation.crs"


def test_it_issues_a_token_to_a_client_secret_basic_client(
    client: Client, make_api_client: Callable[..., CreatedApiClient]
) -> None:
    created = make_api_client()
    response = client.post(TOKEN_URL, GRANT, HTTP_AUTHORIZATION=basic(created.client.client_id, created.client_secret))
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/*.cruds"


def test_it_signs_a_jwt_with_the_expected_claims(
    make_api_client: Callable[..., CreatedApiClient], token_for: Callable[..., str]
) -> None:
    created = make_api_client(scopes="system/Observation.cr")
    token = token_for(created)
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, settings.OAUTH_TOKEN_SIGNING_KEY, algorithms=["HS256"], issuer=settings.PUBLIC_BASE_URL)
    assert header["alg"] == "HS256"
    assert claims["iss"] == settings.PUBLIC_BASE_URL
    assert claims["sub"] == created.client.client_id
    assert claims["scope"] == "system/Observation.cr"
    assert claims["exp"] - claims["iat"] == settings.OAUTH_TOKEN_LIFETIME_SECONDS
    assert claims["jti"]
    assert token_for(created) != token  # a fresh jti each time


def test_it_does_not_need_a_csrf_token(make_api_client: Callable[..., CreatedApiClient]) -> None:
    created = make_api_client()
    csrf_client = Client(enforce_csrf_checks=True)
    form = {**GRANT, "client_id": created.client.client_id, "client_secret": created.client_secret}
    assert csrf_client.post(TOKEN_URL, form).status_code == 200


def test_it_refuses_a_wrong_secret(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client()
    response = request_token(CreatedApiClient(client=created.client, client_secret="not-the-secret"))
    assert_oauth_error(response, 401, "invalid_client")
    assert "WWW-Authenticate" not in response  # the client did not use the Authorization header


def test_it_challenges_a_basic_client_with_a_wrong_secret(
    client: Client, make_api_client: Callable[..., CreatedApiClient]
) -> None:
    created = make_api_client()
    response = client.post(TOKEN_URL, GRANT, HTTP_AUTHORIZATION=basic(created.client.client_id, "wrong"))
    assert_oauth_error(response, 401, "invalid_client")
    assert response["WWW-Authenticate"] == 'Basic realm="token"'


def test_it_refuses_an_unknown_client(client: Client) -> None:
    response = client.post(TOKEN_URL, {**GRANT, "client_id": "nobody", "client_secret": "x"})
    assert_oauth_error(response, 401, "invalid_client")


def test_it_refuses_an_inactive_client(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client()
    created.client.is_active = False
    created.client.save()
    assert_oauth_error(request_token(created), 401, "invalid_client")


def test_it_requires_client_authentication(client: Client) -> None:
    assert_oauth_error(client.post(TOKEN_URL, GRANT), 401, "invalid_client")


def test_it_answers_an_empty_request_with_invalid_request(client: Client) -> None:
    assert_oauth_error(client.generic("POST", TOKEN_URL, b"", content_type=""), 400, "invalid_request")


@pytest.mark.parametrize(
    "header", ["Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode(), "Digest x"]
)
def test_it_refuses_malformed_or_foreign_client_authentication(client: Client, header: str) -> None:
    response = client.post(TOKEN_URL, GRANT, HTTP_AUTHORIZATION=header)
    assert_oauth_error(response, 401, "invalid_client")
    assert response["WWW-Authenticate"] == 'Basic realm="token"'


def test_it_refuses_two_client_authentication_methods_at_once(
    client: Client, make_api_client: Callable[..., CreatedApiClient]
) -> None:
    created = make_api_client()
    response = client.post(
        TOKEN_URL,
        {**GRANT, "client_secret": created.client_secret},
        HTTP_AUTHORIZATION=basic(created.client.client_id, created.client_secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_it_refuses_an_unknown_grant_type(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client()
    assert_oauth_error(request_token(created, grant_type="password"), 400, "unsupported_grant_type")


def test_it_requires_a_grant_type(client: Client, make_api_client: Callable[..., CreatedApiClient]) -> None:
    created = make_api_client()
    form = {"client_id": created.client.client_id, "client_secret": created.client_secret}
    assert_oauth_error(client.post(TOKEN_URL, form), 400, "invalid_request")


def test_it_refuses_a_json_body(client: Client, make_api_client: Callable[..., CreatedApiClient]) -> None:
    created = make_api_client()
    form = {**GRANT, "client_id": created.client.client_id, "client_secret": created.client_secret}
    assert_oauth_error(client.post(TOKEN_URL, form, content_type="application/json"), 400, "invalid_request")


def test_it_refuses_repeated_parameters(client: Client, make_api_client: Callable[..., CreatedApiClient]) -> None:
    created = make_api_client()
    body = (
        f"grant_type=client_credentials&client_id={created.client.client_id}"
        f"&client_secret={created.client_secret}&scope=system/Patient.r&scope=system/*.cruds"
    )
    response = client.post(TOKEN_URL, body, content_type="application/x-www-form-urlencoded")
    assert_oauth_error(response, 400, "invalid_request")


def test_it_answers_405_to_get(client: Client) -> None:
    assert client.get(TOKEN_URL).status_code == 405


def test_it_narrows_the_scope_on_request(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client(scopes="system/*.cruds")
    response = request_token(created, scope="system/Observation.rs system/Patient.read")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Observation.rs system/Patient.read"


def test_it_treats_an_empty_scope_as_the_whole_grant(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client(scopes="system/Patient.rs")
    response = request_token(created, scope="")
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == "system/Patient.rs"


@pytest.mark.parametrize(
    "scope",
    [
        "system/Observation.crs",  # adds create
        "system/*.rs",  # a wildcard over a grant on named types
        "system/Patient.rs system/Encounter.r",  # one scope too many
        "system/Observation.write",
        "patient/Observation.rs",
        "not a scope",
    ],
)
def test_it_refuses_to_widen_the_scope(
    make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any], scope: str
) -> None:
    created = make_api_client(scopes="system/Observation.rs system/Patient.read")
    assert_oauth_error(request_token(created, scope=scope), 400, "invalid_scope")
