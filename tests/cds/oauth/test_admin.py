"""The admin lists API clients and lets staff rescope or deactivate them, never see the secret."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.test import Client

from cds.oauth.models import ApiClient
from cds.oauth.services import CreatedApiClient

pytestmark = pytest.mark.django_db


def test_it_lists_clients_without_their_secret(
    admin_client: Client, make_api_client: Callable[..., CreatedApiClient]
) -> None:
    created = make_api_client(scopes="system/Patient.rs", name="Reporting tool")
    page = admin_client.get("/admin/oauth/apiclient/").content.decode()
    assert created.client.client_id in page and "Reporting tool" in page and "system/Patient.rs" in page
    change = admin_client.get(f"/admin/oauth/apiclient/{created.client.pk}/change/").content.decode()
    assert created.client.secret_hash not in change and "secret" not in change.lower()


def test_it_edits_scopes_and_activity_but_validates_scopes(
    admin_client: Client, make_api_client: Callable[..., CreatedApiClient]
) -> None:
    created = make_api_client()
    url = f"/admin/oauth/apiclient/{created.client.pk}/change/"
    refused = admin_client.post(url, {"name": "x", "scopes": "patient/*.rs", "is_active": "on"})
    assert refused.status_code == 200  # the form comes back with an error
    assert admin_client.post(url, {"name": "x", "scopes": "system/Patient.rs"}).status_code == 302
    stored = ApiClient.objects.get()
    assert (stored.scopes, stored.is_active, stored.secret_hash) == (
        "system/Patient.rs",
        False,
        created.client.secret_hash,
    )


def test_it_leaves_creation_to_the_management_command(admin_client: Client) -> None:
    assert admin_client.get("/admin/oauth/apiclient/add/").status_code == 403
