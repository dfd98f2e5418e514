"""Fixtures for the OAuth2 tests: clients, tokens and the isolated authentication URLconf."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from cds.oauth.services import CreatedApiClient, api_client_create

_TEST_URLS = "cds_oauth_urls_for_tests"


@pytest.fixture
def make_api_client(db: None) -> Callable[..., CreatedApiClient]:
    """Return a builder of API clients (through the service, as the command does)."""

    def build(scopes: str = "system/*.cruds", name: str = "test client") -> CreatedApiClient:
        return api_client_create(name=name, scopes=scopes)

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


@pytest.fixture
def auth_test_urls(settings: Any) -> None:
    """Route requests to ``urls_for_tests.py``.

    The module is loaded from its file because ``tests`` is not importable as a package here:
    neurokit2 installs a top-level ``tests`` package into site-packages that shadows ours.
    """
    if _TEST_URLS not in sys.modules:
        spec = importlib.util.spec_from_file_location(_TEST_URLS, Path(__file__).with_name("urls_for_tests.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[_TEST_URLS] = module
        spec.loader.exec_module(module)
    settings.ROOT_URLCONF = _TEST_URLS
