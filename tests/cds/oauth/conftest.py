"""Fixtures for the OAuth2 tests: API clients and their tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client

from cds.core.services import organization_get_or_create
from cds.oauth.services import CreatedApiClient, api_client_create
from tests.conftest import ORGANIZATION


@pytest.fixture
def make_api_client(db: None) -> Callable[..., CreatedApiClient]:
    """Return a builder of API clients (through the service, as the command does)."""

    def build(scopes: str = "system/*.cruds", name: str = "test client") -> CreatedApiClient:
        organization, _ = organization_get_or_create(slug=ORGANIZATION)
        return api_client_create(name=name, scopes=scopes, organization=organization)

    return build


@pytest.fixture
def request_token(client: Client) -> Callable[..., Any]:
    """Return a function that POSTs a client_secret_post token request and returns the response."""

    def post(created: CreatedApiClient, **extra: str) -> Any:
        form = {
            "grant_type": "client_credentials",
            "client_id": created.client.client_id,
            "client_secret": created.client_secret,
            **extra,
        }
        return client.post("/auth/token", form)

    return post


@pytest.fixture
def token_for(request_token: Callable[..., Any]) -> Callable[..., str]:
    """Return a function that gets an access token for a client (optionally narrowed by ``scope``)."""

    def get(created: CreatedApiClient, **extra: str) -> str:
        response = request_token(created, **extra)
        assert response.status_code == 200, response.content
        return str(response.json()["access_token"])

    return get
