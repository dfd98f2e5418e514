"""Issue 15 item 7: our JWKS URL and a signing-key rotation, against an EHR token endpoint that fetches it over HTTP.

The EHR (a loopback token endpoint run by the test) knows only our JWKS URL, as Epic does for a
backend client: it fetches the set from the running Django (``live_server``), caches it for the
``max-age`` we send, and refetches early only when an assertion names a kid it has not seen.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
import requests

from cds.writeback.client import WritebackConfig, WritebackError, access_token, access_tokens_clear, client_assertion
from tests.cds.writeback.conftest import ClientKey, Loopback, Reply, Request, client_key

CLIENT_ID = "ecg-cds-backend"
JWKS_PATH = "/.well-known/jwks.json"


class JwksEhr:
    """A token endpoint that verifies client assertions with the JWKS it fetches from ``jwks_url``."""

    def __init__(self, jwks_url: str) -> None:
        self.jwks_url = jwks_url
        self.keys: dict[str, dict[str, Any]] = {}
        self.fetched_at = -1e18
        self.max_age_s = 0.0
        self.fetches = 0
        self.clock_offset_s = 0.0  # the test moves the EHR's clock to let its cache expire
        self.token_url = ""

    def now(self) -> float:
        return time.time() + self.clock_offset_s

    def _fetch(self) -> None:
        response = requests.get(self.jwks_url, timeout=5)
        response.raise_for_status()
        self.fetches += 1
        self.keys = {key["kid"]: key for key in response.json()["keys"]}
        self.fetched_at = self.now()
        cache = response.headers.get("Cache-Control", "")
        self.max_age_s = float(cache.partition("max-age=")[2] or 0) if "no-store" not in cache else 0.0

    def key_for(self, kid: str) -> dict[str, Any] | None:
        if self.now() - self.fetched_at > self.max_age_s:
            self._fetch()  # the cached set has expired
        elif kid not in self.keys:
            self._fetch()  # an unknown kid: the client may have rotated, look again once
        return self.keys.get(kid)

    def __call__(self, request: Request) -> Reply:
        form = {name: values[0] for name, values in parse_qs(request.body.decode()).items()}
        assertion = form.get("client_assertion", "")
        header = jwt.get_unverified_header(assertion)
        if header.get("jku") not in {None, self.jwks_url}:
            return Reply(400, {"error": "invalid_client", "error_description": "jku is not the registered JWKS URL"})
        jwk = self.key_for(str(header.get("kid")))
        if jwk is None:
            return Reply(400, {"error": "invalid_client", "error_description": f"no key {header.get('kid')!r}"})
        try:
            claims = jwt.decode(
                assertion, jwt.PyJWK(jwk).key, algorithms=[jwk["alg"]], audience=self.token_url, issuer=CLIENT_ID
            )
        except jwt.InvalidTokenError as exc:
            return Reply(400, {"error": "invalid_client", "error_description": str(exc)})
        return Reply(200, {"access_token": f"token-for-{header['kid']}-{claims['jti']}", "expires_in": 300})


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "keys"
    directory.mkdir()
    return directory


@pytest.fixture
def ehr(live_server: Any, loopback: Any, writeback_settings: Any, keys_dir: Path) -> tuple[JwksEhr, Loopback]:
    jwks_url = f"{live_server.url}{JWKS_PATH}"
    handler = JwksEhr(jwks_url)
    server = loopback(handler)
    handler.token_url = f"{server.url}/token"
    writeback_settings.WRITEBACK_FHIR_BASE_URL = f"{server.url}/fhir"
    writeback_settings.WRITEBACK_AUTH = "private_key_jwt"
    writeback_settings.WRITEBACK_TOKEN_URL = handler.token_url
    writeback_settings.WRITEBACK_CLIENT_ID = CLIENT_ID
    writeback_settings.WRITEBACK_ALGORITHM = "RS384"
    writeback_settings.WRITEBACK_PRIVATE_KEY = None
    writeback_settings.WRITEBACK_PRIVATE_KEYS_DIR = str(keys_dir)
    writeback_settings.WRITEBACK_JWKS_URL = jwks_url
    return handler, server


def publish(keys_dir: Path, kid: str, key: ClientKey) -> None:
    (keys_dir / f"{kid}.pem").write_text(key.private_pem)


def token_with(config: WritebackConfig) -> str | None:
    access_tokens_clear()  # every step asks the EHR again
    return access_token(config=config)


def test_the_jwks_publishes_public_halves_only_with_kid_alg_use_and_a_short_cache(
    live_server: Any, writeback_settings: Any, keys_dir: Path
) -> None:
    rsa_key, ec_key = client_key("RS384"), client_key("ES384")
    publish(keys_dir, "rsa-1", rsa_key)
    publish(keys_dir, "ec-1", ec_key)
    writeback_settings.WRITEBACK_PRIVATE_KEYS_DIR = str(keys_dir)

    response = requests.get(f"{live_server.url}{JWKS_PATH}", timeout=5)

    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "public, max-age=300"
    keys = {key["kid"]: key for key in response.json()["keys"]}
    assert set(keys) == {"rsa-1", "ec-1"}
    assert set(keys["rsa-1"]) == {"kty", "n", "e", "kid", "alg", "use"}
    assert set(keys["ec-1"]) == {"kty", "crv", "x", "y", "kid", "alg", "use"}
    assert (keys["rsa-1"]["alg"], keys["ec-1"]["alg"], keys["ec-1"]["use"]) == ("RS384", "ES384", "sig")
    assert "PRIVATE" not in response.text and '"d"' not in response.text
    # The published key is the one our private key pairs with.
    token = jwt.encode({"x": 1}, rsa_key.private_pem, algorithm="RS384")
    assert jwt.decode(token, jwt.PyJWK(keys["rsa-1"]).key, algorithms=["RS384"]) == {"x": 1}


def test_the_single_key_setting_is_published_under_its_kid(live_server: Any, writeback_settings: Any) -> None:
    writeback_settings.WRITEBACK_PRIVATE_KEYS_DIR = ""
    writeback_settings.WRITEBACK_PRIVATE_KEY = client_key("ES384").private_pem
    writeback_settings.WRITEBACK_KEY_ID = "only-key"
    keys = requests.get(f"{live_server.url}{JWKS_PATH}", timeout=5).json()["keys"]
    assert [(key["kid"], key["alg"]) for key in keys] == [("only-key", "ES384")]


def test_a_rotation_from_key_a_to_key_b_through_the_published_jwks(
    ehr: tuple[JwksEhr, Loopback], writeback_settings: Any, keys_dir: Path
) -> None:
    handler, _ = ehr
    key_a, key_b = client_key("RS384"), client_key("RS384")

    # 1. A is the only key and signs; the EHR fetches our JWKS on first use.
    publish(keys_dir, "key-a", key_a)
    writeback_settings.WRITEBACK_KEY_ID = "key-a"
    assert str(token_with(WritebackConfig.from_settings())).startswith("token-for-key-a-")
    assert handler.fetches == 1
    signed_by_a = WritebackConfig.from_settings()  # a snapshot: it keeps signing with A later
    header = jwt.get_unverified_header(client_assertion(config=signed_by_a))
    assert header == {"alg": "RS384", "kid": "key-a", "typ": "JWT", "jku": handler.jwks_url}

    # 2. B is published ahead; A still signs, and the EHR's cached set still serves it.
    publish(keys_dir, "key-b", key_b)
    assert str(token_with(WritebackConfig.from_settings())).startswith("token-for-key-a-")
    assert handler.fetches == 1

    # 3. B becomes current: the EHR does not know kid key-b yet, refetches once, and accepts it.
    writeback_settings.WRITEBACK_KEY_ID = "key-b"
    config_b = WritebackConfig.from_settings()
    assert config_b.private_key == key_b.private_pem
    assert str(token_with(config_b)).startswith("token-for-key-b-")
    assert handler.fetches == 2

    # 4. An assertion signed with A (in flight during the switch) is still accepted while A is published.
    assert str(token_with(signed_by_a)).startswith("token-for-key-a-")

    # 5. A is withdrawn once its assertions have expired; when the EHR's cache expires, A is refused.
    (keys_dir / "key-a.pem").unlink()
    handler.clock_offset_s = handler.max_age_s + 1
    with pytest.raises(WritebackError) as refused:
        token_with(signed_by_a)
    assert refused.value.status == 400 and not refused.value.transient
    assert "no key 'key-a'" in str(refused.value)
    assert handler.fetches == 3
    assert str(token_with(WritebackConfig.from_settings())).startswith("token-for-key-b-")


def test_no_jku_header_unless_our_jwks_url_is_configured(
    ehr: tuple[JwksEhr, Loopback], writeback_settings: Any, keys_dir: Path
) -> None:
    publish(keys_dir, "key-a", client_key("RS384"))
    writeback_settings.WRITEBACK_KEY_ID = "key-a"
    writeback_settings.WRITEBACK_JWKS_URL = ""
    header = jwt.get_unverified_header(client_assertion(config=WritebackConfig.from_settings()))
    assert header == {"alg": "RS384", "kid": "key-a", "typ": "JWT"}
