"""Liveness (/healthz) and readiness (/readyz) probes answer without a credential."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh_analyzer() -> Iterator[None]:
    from cds.analysis.analyzer import analyzer

    analyzer.cache_clear()
    yield
    analyzer.cache_clear()


def test_it_reports_alive_when_the_database_answers(client: Client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


def test_it_reports_ready_with_the_in_process_models(client: Client, fresh_analyzer: None) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok", "models": "ok"}


def test_it_names_unreachable_models_with_503(client: Client, settings: Any, fresh_analyzer: None) -> None:
    from inference.local_triton import free_port

    settings.INFERENCE_BACKEND = "triton"
    settings.TRITON_URL = f"127.0.0.1:{free_port()}"
    settings.TRITON_HTTP_URL = ""
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "checks": {"database": "ok", "models": "unavailable"}}
