"""SMART Backend Services: private_key_jwt client assertions at ``/auth/token`` and SMART discovery."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
import pytest
import time_machine
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from django.core.management import CommandError, call_command
from django.test import Client, override_settings

from cds.core.services import organization_get_or_create
from cds.oauth.models import UsedAssertion
from cds.oauth.selectors import api_client_authenticate
from cds.oauth.services import CreatedApiClient, api_client_create

pytestmark = pytest.mark.django_db

TOKEN_URL = "/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _rsa() -> Any:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ec() -> Any:
    return ec.generate_private_key(ec.SECP384R1())


# Key generation is the slow part; one key pair per algorithm serves the module.
KEYS = {"RS384": _rsa(), "ES384": _ec()}
OTHER_KEYS = {"RS384": _rsa(), "ES384": _ec()}


def public_jwk(private_key: Any, alg: str, kid: str) -> dict[str, Any]:
    algorithm = jwt.algorithms.RSAAlgorithm if alg == "RS384" else jwt.algorithms.ECAlgorithm
    jwk: dict[str, Any] = algorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": alg, "use": "sig"}


@dataclass
class KeyClient:
    created: CreatedApiClient
    alg: str
    kid: str

    @property
    def client_id(self) -> str:
        return self.created.client.client_id

    def assertion(self, *, key: Any = "registered", headers: dict[str, Any] | None = None, **claims: Any) -> str:
        now = int(time.time())
        body = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": f"{settings.PUBLIC_BASE_URL}/auth/token",
            "iat": now,
            "exp": now + 240,
            "jti": uuid.uuid4().hex,
            **claims,
        }
        header = {"kid": self.kid, "typ": "JWT", **(headers or {})}
        return jwt.encode(
            body, KEYS[self.alg] if key == "registered" else key, algorithm=header.pop("alg", self.alg), headers=header
        )


@pytest.fixture
def key_client(db: None) -> Callable[..., KeyClient]:
    def build(alg: str = "RS384", scopes: str = "system/*.cruds") -> KeyClient:
        kid = f"{alg.lower()}-1"
        organization, _ = organization_get_or_create(slug="org-a")
        created = api_client_create(
            name=f"{alg} client",
            scopes=scopes,
            organization=organization,
            jwks={"keys": [public_jwk(KEYS[alg], alg, kid)]},
        )
        return KeyClient(created=created, alg=alg, kid=kid)

    return build


def request_with_assertion(client: Client, assertion: str, **extra: str) -> Any:
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
    return client.post(TOKEN_URL, form)


def assert_oauth_error(response: Any, status: int, error: str, *, mentions: str = "") -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == error, body
    assert mentions in body["error_description"], body
    assert response["Cache-Control"] == "no-store"


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
@override_settings(OAUTH_ALLOW_CLIENT_SECRET=False)
def test_it_issues_a_token_for_a_good_assertion(client: Client, key_client: Callable[..., KeyClient], alg: str) -> None:
    kc = key_client(alg, scopes="system/Patient.crs system/Observation.crs")
    response = request_with_assertion(client, kc.assertion(), scope="system/Observation.rs")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["scope"] == "system/Observation.rs"
    assert body["expires_in"] == settings.OAUTH_TOKEN_LIFETIME_SECONDS <= 300
    claims = jwt.decode(body["access_token"], settings.OAUTH_TOKEN_SIGNING_KEY, algorithms=["HS256"])
    assert claims["sub"] == kc.client_id
    assert UsedAssertion.objects.filter(client=kc.created.client).count() == 1


def test_it_accepts_a_matching_client_id_in_the_form(client: Client, key_client: Callable[..., KeyClient]) -> None:
    kc = key_client()
    assert request_with_assertion(client, kc.assertion(), client_id=kc.client_id).status_code == 200
    response = request_with_assertion(client, kc.assertion(), client_id="someone-else")
    assert_oauth_error(response, 401, "invalid_client", mentions="client_id")


@pytest.mark.parametrize(
    ("make", "mentions"),
    [
        pytest.param(lambda kc: kc.assertion(key=OTHER_KEYS[kc.alg]), "Signature", id="wrong-key"),
        pytest.param(lambda kc: kc.assertion(aud="https://elsewhere.example/token"), "aud", id="wrong-aud"),
        pytest.param(lambda kc: kc.assertion(aud=None), "aud", id="no-aud"),
        pytest.param(lambda kc: kc.assertion(exp=int(time.time()) - 60), "expired", id="expired"),
        pytest.param(lambda kc: kc.assertion(exp=int(time.time()) + 600), "at most 300 s", id="exp-too-far"),
        pytest.param(lambda kc: kc.assertion(headers={"kid": "unknown"}), "no registered key", id="unknown-kid"),
        pytest.param(
            lambda kc: kc.assertion(iss="not-a-client", sub="not-a-client"), "no registered key", id="unknown-iss"
        ),
        pytest.param(lambda kc: kc.assertion(sub="another"), "iss and sub", id="sub-differs"),
        pytest.param(lambda kc: kc.assertion(jti=None), "jti", id="no-jti"),
        pytest.param(lambda kc: kc.assertion(jti="a\x00b"), "jti", id="nul-in-jti"),
        pytest.param(lambda kc: kc.assertion(iss="a\x00", sub="a\x00"), "iss and sub", id="nul-in-iss"),
        pytest.param(lambda kc: kc.assertion(exp=10**400), "at most 300 s", id="exp-huge"),
        pytest.param(lambda kc: kc.assertion(exp=float("inf")), "refused", id="exp-infinite"),
        pytest.param(
            lambda kc: kc.assertion(key="a-shared-secret-known-to-an-attacker-32b", headers={"alg": "HS256"}),
            "alg",
            id="hs256",
        ),
        pytest.param(lambda kc: kc.assertion(key=None, headers={"alg": "none"}), "alg", id="alg-none"),
        pytest.param(lambda kc: "not.a.jwt", "not a JWT", id="garbage"),
    ],
)
@override_settings(OAUTH_ALLOW_CLIENT_SECRET=False)
def test_it_refuses_a_bad_assertion(
    client: Client, key_client: Callable[..., KeyClient], make: Callable[[KeyClient], str], mentions: str
) -> None:
    kc = key_client()
    response = request_with_assertion(client, make(kc))
    assert_oauth_error(response, 401, "invalid_client", mentions=mentions)
    assert not UsedAssertion.objects.exists()


def test_it_refuses_an_rs384_key_used_as_es384(client: Client, key_client: Callable[..., KeyClient]) -> None:
    kc = key_client("RS384")
    forged = kc.assertion(key=KEYS["ES384"], headers={"alg": "ES384"})
    assert_oauth_error(request_with_assertion(client, forged), 401, "invalid_client", mentions="not an ES384 key")


def test_it_refuses_a_replayed_jti(client: Client, key_client: Callable[..., KeyClient]) -> None:
    kc = key_client("ES384")
    assertion = kc.assertion()
    assert request_with_assertion(client, assertion).status_code == 200
    assert_oauth_error(request_with_assertion(client, assertion), 401, "invalid_client", mentions="already used")
    # The same jti in a freshly signed assertion is a replay too.
    jti = jwt.decode(assertion, options={"verify_signature": False})["jti"]
    assert_oauth_error(request_with_assertion(client, kc.assertion(jti=jti)), 401, "invalid_client")


def test_it_purges_used_jtis_once_their_assertions_expired(
    client: Client, key_client: Callable[..., KeyClient]
) -> None:
    kc = key_client()
    with time_machine.travel(time.time() - 3600, tick=False):
        assert request_with_assertion(client, kc.assertion()).status_code == 200
    assert UsedAssertion.objects.count() == 1
    assert request_with_assertion(client, kc.assertion()).status_code == 200
    assert UsedAssertion.objects.count() == 1  # the hour-old one went, the new one stays


def test_it_refuses_a_wrong_assertion_type_and_mixed_methods(
    client: Client, key_client: Callable[..., KeyClient]
) -> None:
    kc = key_client()
    response = request_with_assertion(client, kc.assertion(), client_assertion_type="urn:example:saml")
    assert_oauth_error(response, 400, "invalid_request", mentions="client_assertion_type")
    response = client.post(TOKEN_URL, {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE})
    assert_oauth_error(response, 400, "invalid_request", mentions="client_assertion is required")
    response = request_with_assertion(client, kc.assertion(), client_secret="x")
    assert_oauth_error(response, 400, "invalid_request", mentions="one client authentication method")


def test_it_refuses_the_secret_flow_when_disabled(
    client: Client, make_api_client: Callable[..., CreatedApiClient], request_token: Callable[..., Any]
) -> None:
    created = make_api_client()
    assert request_token(created).status_code == 200
    with override_settings(OAUTH_ALLOW_CLIENT_SECRET=False):
        assert_oauth_error(request_token(created), 401, "invalid_client", mentions="use private_key_jwt")
        configuration = client.get("/.well-known/smart-configuration").json()
    assert configuration["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]


def test_it_gives_a_key_registered_client_no_usable_secret(key_client: Callable[..., KeyClient]) -> None:
    kc = key_client()
    assert kc.created.client_secret is None
    assert kc.created.client.auth_method == "private_key_jwt"
    for guess in ("", "None", kc.created.client.secret_hash):
        assert api_client_authenticate(client_id=kc.client_id, client_secret=guess) is None


@pytest.mark.urls("tests.cds.oauth.urls_for_tests")
def test_it_enforces_the_scopes_of_an_assertion_token_per_resource_and_action(
    client: Client, key_client: Callable[..., KeyClient]
) -> None:
    kc = key_client("ES384", scopes="system/Observation.rs system/Patient.c")
    token = request_with_assertion(client, kc.assertion()).json()["access_token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    expected = {("Observation", "r"): 200, ("Observation", "s"): 200, ("Observation", "c"): 403}
    expected |= {("Patient", "c"): 200, ("Patient", "r"): 403, ("DiagnosticReport", "r"): 403}
    for (resource_type, action), status in expected.items():
        response = client.get(f"/fhir/_test/{resource_type}/{action}", **auth)
        assert response.status_code == status, (resource_type, action, response.content)
    # A scope outside the grant cannot be requested either.
    response = request_with_assertion(client, kc.assertion(), scope="system/Observation.c")
    assert_oauth_error(response, 400, "invalid_scope")


def test_it_refuses_writes_on_the_real_fhir_routes_with_a_read_only_assertion_token(
    client: Client, key_client: Callable[..., KeyClient], patient_resource: dict[str, Any]
) -> None:
    kc = key_client("RS384", scopes="system/*.rs")
    token = request_with_assertion(client, kc.assertion()).json()["access_token"]
    auth = {"HTTP_AUTHORIZATION": f"Bearer {token}"}
    response = client.post("/fhir/Patient", json.dumps(patient_resource), content_type="application/fhir+json", **auth)
    assert response.status_code == 403, response.content
    assert response.json()["resourceType"] == "OperationOutcome"
    assert client.get("/fhir/Patient", **auth).status_code == 200


@pytest.mark.parametrize("path", ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"])
def test_it_publishes_the_smart_configuration(client: Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["token_endpoint"] == f"{settings.PUBLIC_BASE_URL}/auth/token"
    assert body["token_endpoint_auth_methods_supported"][0] == "private_key_jwt"
    assert "client_secret_basic" in body["token_endpoint_auth_methods_supported"]  # allowed in tests
    assert body["token_endpoint_auth_signing_alg_values_supported"] == ["RS384", "ES384"]
    assert body["grant_types_supported"] == ["client_credentials"]
    assert "system/*.cruds" in body["scopes_supported"]
    assert {"client-confidential-asymmetric", "permission-v2"} <= set(body["capabilities"])
    assert response["Cache-Control"] == "no-store"


def test_it_names_smart_in_the_capability_statement(client: Client) -> None:
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]
    codes = {c["code"] for service in security["service"] for c in service["coding"]}
    assert "SMART-on-FHIR" in codes
    assert "private_key_jwt" in security["description"]


def test_it_registers_a_jwks_from_the_command(tmp_path: Path, client: Client) -> None:
    kid = "integration-2026"
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps({"keys": [public_jwk(KEYS["ES384"], "ES384", kid)]}))
    out = io.StringIO()
    call_command(
        "create_api_client",
        "EHR engine",
        organization="org-a",
        jwks=str(jwks_file),
        scopes="system/Observation.crs",
        stdout=out,
    )
    credentials = json.loads(out.getvalue())
    assert set(credentials) >= {"client_id", "client_secret", "token_url", "scopes", "auth_method"}
    assert credentials["auth_method"] == "private_key_jwt"
    assert credentials["client_secret"] is None
    now = int(time.time())
    claims = {"iss": credentials["client_id"], "sub": credentials["client_id"], "aud": credentials["token_url"]}
    claims |= {"exp": now + 120, "jti": uuid.uuid4().hex}
    assertion = jwt.encode(claims, KEYS["ES384"], algorithm="ES384", headers={"kid": kid})
    assert request_with_assertion(client, assertion).status_code == 200


@pytest.mark.parametrize(
    ("jwks", "problem"),
    [
        ({"keys": [{**public_jwk(KEYS["RS384"], "RS384", "k"), "d": "private"}]}, "private key material"),
        ({"keys": [{k: v for k, v in public_jwk(KEYS["RS384"], "RS384", "k").items() if k != "kid"}]}, "kid"),
        ({"keys": [public_jwk(KEYS["RS384"], "RS384", "k"), public_jwk(KEYS["ES384"], "ES384", "k")]}, "twice"),
        ({"keys": [{**public_jwk(KEYS["RS384"], "RS384", "k"), "alg": "RS256"}]}, "only RSA keys"),
        ({"keys": [public_jwk(ec.generate_private_key(ec.SECP256R1()), "ES384", "k")]}, "P-384"),
        ({"keys": [public_jwk(rsa.generate_private_key(65537, 1024), "RS384", "k")]}, "2048"),
        ({"keys": []}, "at least one key"),
    ],
)
def test_it_refuses_an_unusable_jwks(tmp_path: Path, jwks: dict[str, Any], problem: str) -> None:
    jwks_file = tmp_path / "jwks.json"
    jwks_file.write_text(json.dumps(jwks))
    with pytest.raises(CommandError, match=problem):
        call_command("create_api_client", "bad keys", organization="org-a", jwks=str(jwks_file), stdout=io.StringIO())
