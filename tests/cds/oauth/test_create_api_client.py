"""``manage.py create_api_client``: credentials printed once as JSON, secret stored hashed."""

from __future__ import annotations

import io
import json

import pytest
from django.conf import settings
from django.contrib.auth.hashers import check_password, identify_hasher
from django.core.management import CommandError, call_command
from django.test import Client

from cds.core.models import Organization
from cds.oauth.management.commands.create_api_client import DEFAULT_SCOPES
from cds.oauth.models import ApiClient

pytestmark = pytest.mark.django_db


def run(*args: str, **options: str) -> str:
    out = io.StringIO()
    call_command("create_api_client", *args, stdout=out, **({"organization": "org-a"} | options))
    return out.getvalue()


def test_it_prints_exactly_one_json_object_with_the_credentials() -> None:
    output = run("Epic integration engine")
    assert output.count("\n") == 1 and output.endswith("\n")
    credentials = json.loads(output)
    assert set(credentials) == {
        "client_id",
        "client_secret",
        "token_url",
        "scopes",
        "auth_method",
        "organization",
        "organization_created",
    }
    assert credentials["auth_method"] == "client_secret"
    assert credentials["token_url"] == f"{settings.PUBLIC_BASE_URL}/auth/token"
    assert credentials["scopes"] == DEFAULT_SCOPES
    stored = ApiClient.objects.get()
    assert (stored.name, stored.client_id, stored.is_active) == (
        "Epic integration engine",
        credentials["client_id"],
        True,
    )


def test_it_stores_only_a_hash_of_the_secret() -> None:
    credentials = json.loads(run("hashed"))
    stored = ApiClient.objects.get(client_id=credentials["client_id"])
    assert credentials["client_secret"] not in stored.secret_hash
    assert identify_hasher(stored.secret_hash).algorithm == "pbkdf2_sha256"
    assert check_password(credentials["client_secret"], stored.secret_hash)
    assert len(credentials["client_secret"]) >= 40  # 32 random bytes, url-safe


def test_it_creates_distinct_credentials_each_time() -> None:
    first, second = json.loads(run("a")), json.loads(run("a"))
    assert first["client_id"] != second["client_id"]
    assert first["client_secret"] != second["client_secret"]


def test_it_grants_the_requested_scopes() -> None:
    credentials = json.loads(run("reader", scopes="system/*.rs  system/*.rs"))
    assert credentials["scopes"] == "system/*.rs"
    assert ApiClient.objects.get().scopes == "system/*.rs"


@pytest.mark.parametrize("scopes", ["", "patient/*.rs", "system/Observation.rs?code=x", "openid"])
def test_it_refuses_scopes_it_cannot_enforce(scopes: str) -> None:
    with pytest.raises(CommandError, match="scope"):
        run("bad", scopes=scopes)
    assert not ApiClient.objects.exists()
    assert not Organization.objects.filter(slug="org-a").exists()  # no empty tenant left behind


def test_it_requires_the_organization_flag() -> None:
    with pytest.raises(CommandError, match="--organization"):
        call_command("create_api_client", "orphan", stdout=io.StringIO())
    assert not ApiClient.objects.exists()


def test_it_puts_the_client_in_the_named_organization_creating_it_once() -> None:
    first = json.loads(run("ward a feed", organization="st-marys"))
    second = json.loads(run("ward b feed", organization="st-marys"))
    assert (first["organization"], first["organization_created"]) == ("st-marys", True)
    assert (second["organization"], second["organization_created"]) == ("st-marys", False)
    organization = Organization.objects.get(slug="st-marys")
    assert set(ApiClient.objects.values_list("organization", flat=True)) == {organization.pk}


def test_it_refuses_an_organization_slug_with_odd_characters() -> None:
    with pytest.raises(CommandError, match="slug"):
        run("bad org", organization="st marys/ward")
    assert not ApiClient.objects.exists()


def test_it_prints_credentials_that_obtain_a_token(client: Client) -> None:
    credentials = json.loads(run("demo-ehr"))
    response = client.post(
        "/auth/token",
        {
            "grant_type": "client_credentials",
            "client_id": credentials["client_id"],
            "client_secret": credentials["client_secret"],
        },
    )
    assert response.status_code == 200, response.content
    assert response.json()["scope"] == DEFAULT_SCOPES
