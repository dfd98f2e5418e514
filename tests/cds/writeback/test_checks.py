"""System checks on the write-back settings (cds.E010-E012)."""

from __future__ import annotations

from typing import Any

import pytest

from cds.writeback.checks import check_writeback_settings


def writeback_ids(settings: Any) -> list[str]:
    return [message.id for message in check_writeback_settings() if message.id in {"cds.E010", "cds.E011", "cds.E012"}]


def test_it_accepts_write_back_switched_off(settings: Any) -> None:
    settings.WRITEBACK_ENABLED = False
    settings.WRITEBACK_FHIR_BASE_URL = ""
    assert writeback_ids(settings) == []


@pytest.mark.parametrize(
    ("auth", "missing"),
    [
        ("none", ["WRITEBACK_FHIR_BASE_URL"]),
        (
            "client_secret",
            ["WRITEBACK_FHIR_BASE_URL", "WRITEBACK_TOKEN_URL", "WRITEBACK_CLIENT_ID", "WRITEBACK_CLIENT_SECRET"],
        ),
        (
            "private_key_jwt",
            [
                "WRITEBACK_FHIR_BASE_URL",
                "WRITEBACK_TOKEN_URL",
                "WRITEBACK_CLIENT_ID",
                "WRITEBACK_PRIVATE_KEY",
                "WRITEBACK_KEY_ID",
            ],
        ),
    ],
)
def test_it_requires_a_base_url_and_what_the_auth_method_needs(settings: Any, auth: str, missing: list[str]) -> None:
    settings.WRITEBACK_ENABLED = True
    settings.WRITEBACK_AUTH = auth
    for name in ("WRITEBACK_FHIR_BASE_URL", "WRITEBACK_TOKEN_URL", "WRITEBACK_CLIENT_ID", "WRITEBACK_KEY_ID"):
        setattr(settings, name, "")
    settings.WRITEBACK_CLIENT_SECRET = None
    settings.WRITEBACK_PRIVATE_KEY = None
    (error,) = [m for m in check_writeback_settings() if m.id == "cds.E010"]
    assert error.msg == f"WRITEBACK_ENABLED with WRITEBACK_AUTH={auth} needs {', '.join(missing)}."


def test_it_accepts_a_complete_private_key_jwt_configuration(settings: Any) -> None:
    settings.WRITEBACK_ENABLED = True
    settings.WRITEBACK_FHIR_BASE_URL = "https://ehr.example.org/fhir"
    settings.WRITEBACK_AUTH = "private_key_jwt"
    settings.WRITEBACK_TOKEN_URL = "https://ehr.example.org/oauth/token"
    settings.WRITEBACK_CLIENT_ID = "ecg-cds"
    settings.WRITEBACK_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----..."
    settings.WRITEBACK_KEY_ID = "key-1"
    settings.WRITEBACK_ALGORITHM = "ES384"
    assert writeback_ids(settings) == []


def test_it_rejects_unknown_auth_methods_algorithms_and_a_short_sending_timeout(settings: Any) -> None:
    settings.WRITEBACK_ENABLED = True
    settings.WRITEBACK_FHIR_BASE_URL = "https://ehr.example.org/fhir"
    settings.WRITEBACK_AUTH = "basic"
    settings.WRITEBACK_SENDING_TIMEOUT_S = 100
    settings.WRITEBACK_TIMEOUT_S = 30.0
    assert writeback_ids(settings) == ["cds.E011", "cds.E012"]
    settings.WRITEBACK_AUTH = "private_key_jwt"
    settings.WRITEBACK_ALGORITHM = "HS256"
    assert "cds.E011" in writeback_ids(settings)
