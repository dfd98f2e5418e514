"""The non-FHIR API against its OpenAPI description (``cds/core/openapi.yaml``), property-tested by schemathesis.

Schemathesis loads the description from ``GET /openapi.yaml`` through the WSGI app, generates
requests for every operation (valid and invalid ones) and checks each answer in-process: no 5xx,
a documented status code and content type, a body matching the documented schema. The number of
examples per operation is small so the run stays well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
import yaml
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, settings

from cds.core.apis import OPENAPI_PATH
from tests.conftest import api_client_token

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def api_schema(db: None, hook_token: str) -> Iterator[Any]:
    # Like Django's test client: a finished request must not close the connection that holds the
    # test's transaction (the WSGI handler would, seeing autocommit off). After hook_token: the test
    # client reconnects the signal when its own request ends.
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        loaded = schemathesis.openapi.from_wsgi("/openapi.yaml", get_wsgi_application())
        # NUL is refused with 400 anywhere in a request (PostgreSQL cannot store it; see
        # RejectNulMiddleware and test_nul.py), which a schema cannot say of every nested key.
        loaded.config.generation.update(allow_x00=False)
        yield loaded
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def hook_token(db: None) -> str:
    """A token allowed to call the CDS service (system/Observation.r), so cards are actually rendered."""
    return api_client_token(Client(), "system/*.rs")


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,  # the same examples each run: a failure here reproduces
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_it_answers_every_operation_as_described(case: Any, hook_token: str) -> None:
    headers = {"Authorization": f"Bearer {hook_token}"} if case.path.startswith("/cds-services/") else None
    excluded = []
    if case.path == "/auth/token":
        # A schema-valid token request still fails (400/401) without a registered client and a
        # signed assertion, which generated data cannot have; the real grants are in tests/cds/oauth.
        excluded.append(schemathesis.checks.positive_data_acceptance)
    case.call_and_validate(headers=headers, excluded_checks=excluded)


def test_it_serves_a_description_of_every_non_fhir_endpoint(client: Client) -> None:
    response = client.get("/openapi.yaml")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/yaml")
    document = yaml.safe_load(response.content)
    assert document["openapi"].startswith("3.1")
    assert document == yaml.safe_load(OPENAPI_PATH.read_text())
    assert {
        "/auth/token",
        "/.well-known/smart-configuration",
        "/fhir/.well-known/smart-configuration",
        "/healthz",
        "/readyz",
        "/cds-services",
        "/cds-services/{service_id}",
    } <= set(document["paths"])
