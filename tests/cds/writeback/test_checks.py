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


# --- cds.E013: the signing key set (rotation, issue 15) ----------------------------------------------


def key_set_errors(settings: Any) -> list[str]:
    from cds.writeback.checks import check_signing_keys

    return [message.msg for message in check_signing_keys() if message.id == "cds.E013"]


def _pem(private: Any) -> str:
    from cryptography.hazmat.primitives import serialization

    return private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture
def key_set(settings: Any, tmp_path: Any) -> Any:
    from tests.cds.writeback.conftest import client_key

    (tmp_path / "key-a.pem").write_text(client_key("RS384").private_pem)
    (tmp_path / "key-b.pem").write_text(client_key("RS384").private_pem)
    settings.WRITEBACK_PRIVATE_KEYS_DIR = str(tmp_path)
    settings.WRITEBACK_PRIVATE_KEY = None
    settings.WRITEBACK_KEY_ID = "key-a"
    settings.WRITEBACK_ALGORITHM = "RS384"
    return tmp_path


def test_a_sound_key_set_passes(settings: Any, key_set: Any) -> None:
    assert key_set_errors(settings) == []


def test_the_current_key_must_be_in_the_set(settings: Any, key_set: Any) -> None:
    settings.WRITEBACK_KEY_ID = "key-c"
    assert key_set_errors(settings) == [
        "WRITEBACK_KEY_ID='key-c' (the current key) is not in the key set (key-a, key-b)"
    ]


def test_a_kid_may_not_be_used_twice(settings: Any, key_set: Any) -> None:
    from tests.cds.writeback.conftest import client_key

    settings.WRITEBACK_PRIVATE_KEY = client_key("RS384").private_pem  # the single key, under kid key-a too
    (error,) = key_set_errors(settings)
    assert error.startswith("kid 'key-a' is used twice")


def test_an_unreadable_key_is_refused(settings: Any, key_set: Any) -> None:
    (key_set / "key-b.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    (error,) = key_set_errors(settings)
    assert error.startswith(f"{key_set / 'key-b.pem'}: not a readable unencrypted PEM private key")


def test_a_weak_rsa_key_or_a_wrong_curve_is_refused(settings: Any, key_set: Any) -> None:
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    (key_set / "key-b.pem").write_text(_pem(rsa.generate_private_key(public_exponent=65537, key_size=1024)))
    (key_set / "key-c.pem").write_text(_pem(ec.generate_private_key(ec.SECP256R1())))
    assert key_set_errors(settings) == [
        f"{key_set / 'key-b.pem'}: RSA key of 1024 bits; at least 2048 are required",
        f"{key_set / 'key-c.pem'}: EC key on secp256r1; ES384 needs P-384",
    ]


def test_the_current_key_must_match_the_signing_algorithm(settings: Any, key_set: Any) -> None:
    settings.WRITEBACK_ALGORITHM = "ES384"
    assert key_set_errors(settings) == ["the current key 'key-a' signs RS384, not WRITEBACK_ALGORITHM"]


def test_a_key_directory_stands_in_for_the_single_key(settings: Any, key_set: Any) -> None:
    settings.WRITEBACK_ENABLED = True
    settings.WRITEBACK_AUTH = "private_key_jwt"
    settings.WRITEBACK_FHIR_BASE_URL = "https://ehr.example/fhir"
    settings.WRITEBACK_TOKEN_URL = "https://ehr.example/token"
    settings.WRITEBACK_CLIENT_ID = "ecg-cds"
    assert [m for m in check_writeback_settings() if m.id == "cds.E010"] == []


def test_a_missing_key_directory_is_named(settings: Any, key_set: Any) -> None:
    settings.WRITEBACK_PRIVATE_KEYS_DIR = str(key_set / "nowhere")
    assert key_set_errors(settings) == [
        f"WRITEBACK_PRIVATE_KEYS_DIR={str(key_set / 'nowhere')!r} is not a readable directory",
        "WRITEBACK_KEY_ID='key-a' (the current key) is not in the key set ()",
    ]
