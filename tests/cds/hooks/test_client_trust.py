"""CDS Hooks 2.0 "Trusting CDS Clients": the EHR's signed JWT, and the fhirServer + fhirAuthorization fallback.

The EHR is run by the tests: it signs with its own key and serves its JWKS over loopback HTTP;
its FHIR server for the fallback is a real R4 server (sekmet) that requires a bearer token.
"""

from __future__ import annotations

import io
import json
import time
from typing import Any

import jwt
import pytest
import requests
from auditlog.models import LogEntry
from django.core.management import call_command
from django.core.management.base import CommandError

from cds.core.services import organization_get_or_create
from cds.hooks.models import UsedHookJwt
from cds.hooks.services import cds_client_register
from tests.cds.hooks.conftest import SERVICE_URL, Ehr, public_jwk
from tests.cds.hooks.test_patient_view import hook_request
from tests.cds.writeback.conftest import READER_TOKEN, Reply, Sekmet, client_key
from tests.conftest import ORGANIZATION, OTHER_ORGANIZATION

pytestmark = pytest.mark.django_db

MRN = {"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0001"}  # patient_resource's identifier
PREFETCH = {"patient": {"resourceType": "Patient", "id": "ehr-42", "identifier": [MRN]}}


@pytest.mark.parametrize("algorithm", ["RS384", "ES384"])
def test_a_signed_jwt_gets_the_cards(client: Any, make_ehr: Any, analysed_patient: str, algorithm: str) -> None:
    ehr: Ehr = make_ehr(algorithm=algorithm)
    response = ehr.call(client, hook_request("ehr-42", PREFETCH))
    assert response.status_code == 200, response.content
    cards = response.json()["cards"]
    assert [c["indicator"] for c in cards] == ["warning", "info"]
    # The JWKS was fetched once from the registered URL; the audit trail names the CDS client.
    assert [r.path for r in ehr.jwks_server.requests] == ["/.well-known/jwks.json"]
    entry = LogEntry.objects.filter(additional_data__interaction="cds-hooks patient-view").latest("pk")
    assert entry.additional_data["api_client"] == f"cds-client:{ehr.iss}"


def _refusals(ehr: Ehr) -> dict[str, tuple[str, str]]:
    """Return, per case, a refused token and the words its 401 must carry."""
    now = int(time.time())
    other_key = client_key(ehr.key.algorithm)  # same kid, another private key: a forged signature
    hs256 = jwt.encode(
        {"iss": ehr.iss, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": "h"},
        "a-shared-secret-guessed-by-an-attacker",
        algorithm="HS256",
        headers={"kid": ehr.kid},
    )
    unsigned = jwt.encode(
        {"iss": ehr.iss, "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": "n"},
        None,
        algorithm="none",
        headers={"kid": ehr.kid},
    )
    return {
        "wrong aud": (ehr.token(claims={"aud": "https://other.example/cds-services/x"}), f"aud must be {SERVICE_URL}"),
        "expired": (ehr.token(claims={"iat": now - 400, "exp": now - 100}), "expired"),
        "lifetime over 5 min": (ehr.token(claims={"exp": now + 900}), "at most 300 s"),
        "unknown iss": (ehr.token(claims={"iss": "https://stranger.example"}), "not a registered, active CDS client"),
        "unknown kid": (ehr.token(header={"kid": "no-such-key"}), "no key 'no-such-key'"),
        "bad signature": (ehr.token(key=other_key), "signature does not verify"),
        "alg none": (unsigned, "alg must be one of RS384, ES384"),
        "alg HS256": (hs256, "alg must be one of RS384, ES384"),
        "jku not registered": (ehr.token(header={"jku": "https://evil.example/jwks"}), "jku is not the JWKS URL"),
        "no jti": (ehr.token(claims={"jti": None}), "jti"),
        "not a JWT": ("not-a-jwt", "not a JWT"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "wrong aud",
        "expired",
        "lifetime over 5 min",
        "unknown iss",
        "unknown kid",
        "bad signature",
        "alg none",
        "alg HS256",
        "jku not registered",
        "no jti",
        "not a JWT",
    ],
)
def test_each_bad_jwt_is_a_401_with_its_reason(
    client: Any, make_ehr: Any, analysed_patient: str, case: str, caplog: Any
) -> None:
    ehr: Ehr = make_ehr()
    token, reason = _refusals(ehr)[case]
    audited = LogEntry.objects.count()
    response = ehr.call(client, hook_request("ehr-42", PREFETCH), token=token)
    assert response.status_code == 401, (case, response.content)
    assert reason in response.json()["detail"], response.json()
    assert response["WWW-Authenticate"] == 'Bearer realm="cds-hooks", error="invalid_token"'
    assert LogEntry.objects.count() == audited  # no patient data was read
    assert any("CDS Hooks JWT refused" in r.getMessage() and reason in r.getMessage() for r in caplog.records)


def test_a_replayed_jti_is_refused(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ehr: Ehr = make_ehr()
    token = ehr.token()
    assert ehr.call(client, hook_request("ehr-42", PREFETCH), token=token).status_code == 200
    replay = ehr.call(client, hook_request("ehr-42", PREFETCH), token=token)
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    assert UsedHookJwt.objects.filter(client=ehr.registration).count() == 1


def test_an_inactive_client_is_refused(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ehr: Ehr = make_ehr()
    assert ehr.registration is not None
    ehr.registration.is_active = False
    ehr.registration.save()
    response = ehr.call(client, hook_request("ehr-42", PREFETCH))
    assert response.status_code == 401 and "not a registered, active" in response.json()["detail"]


def test_expired_jtis_are_purged(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ehr: Ehr = make_ehr()
    assert ehr.registration is not None
    UsedHookJwt.objects.create(client=ehr.registration, jti="old", expires_at="2020-01-01T00:00:00Z")
    assert ehr.call(client, hook_request("ehr-42", PREFETCH)).status_code == 200
    assert list(UsedHookJwt.objects.values_list("jti", flat=True)).count("old") == 0


def test_unknown_kids_refetch_the_jwks_at_most_once_per_interval(
    client: Any, make_ehr: Any, analysed_patient: str, settings: Any
) -> None:
    ehr: Ehr = make_ehr()
    assert ehr.call(client, hook_request("ehr-42", PREFETCH)).status_code == 200
    for _ in range(5):  # a flood of made-up kids right after a fetch: answered from the cache
        response = ehr.call(client, hook_request("ehr-42", PREFETCH), token=ehr.token(header={"kid": "made-up"}))
        assert response.status_code == 401
    assert len(ehr.jwks_server.requests) == 1
    # The EHR rotates to a new key: once the refetch interval has passed, its first JWT refetches.
    new_key = client_key("ES384")
    ehr.served_keys.append(public_jwk(new_key, "ehr-key-2"))
    settings.CDS_HOOKS_JWKS_REFETCH_MIN_S = 0
    rotated = ehr.token(header={"kid": "ehr-key-2"}, key=new_key)
    assert ehr.call(client, hook_request("ehr-42", PREFETCH), token=rotated).status_code == 200
    assert len(ehr.jwks_server.requests) == 2


def test_an_unreachable_jwks_is_a_401_not_a_500(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ehr: Ehr = make_ehr()
    ehr.jwks_server.handler = lambda request: Reply(503, {"error": "down"})
    response = ehr.call(client, hook_request("ehr-42", PREFETCH))
    assert response.status_code == 401
    assert "JWKS URL answered HTTP 503" in response.json()["detail"]


def test_a_client_sees_only_its_organisations_patients(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ours: Ehr = make_ehr()
    theirs: Ehr = make_ehr(organization=OTHER_ORGANIZATION)
    assert len(ours.call(client, hook_request("ehr-42", PREFETCH)).json()["cards"]) == 2
    # Same MRN, same patientId and even our own logical id: nothing of org-a is visible to org-b's EHR.
    assert theirs.call(client, hook_request("ehr-42", PREFETCH)).json() == {"cards": []}
    own_id = {"patient": {"resourceType": "Patient", "id": analysed_patient}}
    assert theirs.call(client, hook_request(analysed_patient, own_id)).json() == {"cards": []}


def test_our_own_access_tokens_still_work(service_account: Any, analysed_patient: str) -> None:
    response = service_account.post(
        "/cds-services/ecg-ai-findings", hook_request("ehr-42", PREFETCH), content_type="application/json"
    )
    assert response.status_code == 200 and len(response.json()["cards"]) == 2


def test_no_token_is_a_401(client: Any, analysed_patient: str) -> None:
    response = client.post(
        "/cds-services/ecg-ai-findings", hook_request("ehr-42", PREFETCH), content_type="application/json"
    )
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == 'Bearer realm="cds-hooks"'


# --- the fhirServer + fhirAuthorization fallback -------------------------------------------------


def fhir_authorization(token: str = READER_TOKEN, **overrides: Any) -> dict[str, Any]:
    return {
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": 300,
        "scope": "patient/Patient.read",
        "subject": "cds-service",
        **overrides,
    }


def no_prefetch(patient_id: str, server: str | None, authorization: dict[str, Any] | None) -> dict[str, Any]:
    body = hook_request(patient_id)
    body.pop("prefetch")
    if server is not None:
        body["fhirServer"] = server
    if authorization is not None:
        body["fhirAuthorization"] = authorization
    return body


@pytest.fixture
def ehr_patient(ehr_fhir: Sekmet) -> str:
    """A Patient with MRN-0001 in the EHR's FHIR server, under the EHR's own id."""
    patient_id = f"ehr-{int(time.time() * 1000) % 10**9}"
    response = requests.put(
        f"{ehr_fhir.base_url}/Patient/{patient_id}",
        json={"resourceType": "Patient", "id": patient_id, "identifier": [MRN]},
        headers={"Authorization": f"Bearer {READER_TOKEN}", "Content-Type": "application/fhir+json"},
        timeout=10,
    )
    assert response.status_code in (200, 201), response.text
    return patient_id


def test_without_prefetch_the_patient_is_read_from_the_ehr_fhir_server(
    client: Any, make_ehr: Any, analysed_patient: str, ehr_fhir: Sekmet, ehr_patient: str
) -> None:
    ehr: Ehr = make_ehr(fhir_servers=[ehr_fhir.base_url])
    response = ehr.call(client, no_prefetch(ehr_patient, ehr_fhir.base_url + "/", fhir_authorization()))
    assert response.status_code == 200, response.content
    assert [c["indicator"] for c in response.json()["cards"]] == ["warning", "info"]
    # prefetch.patient null (the EHR had nothing) falls back the same way.
    body = no_prefetch(ehr_patient, ehr_fhir.base_url, fhir_authorization())
    body["prefetch"] = {"patient": None}
    assert len(ehr.call(client, body).json()["cards"]) == 2


def test_a_token_the_ehr_refuses_is_a_412_and_nothing_is_read(
    client: Any, make_ehr: Any, analysed_patient: str, ehr_fhir: Sekmet, ehr_patient: str
) -> None:
    ehr: Ehr = make_ehr(fhir_servers=[ehr_fhir.base_url])
    audited = LogEntry.objects.count()
    response = ehr.call(client, no_prefetch(ehr_patient, ehr_fhir.base_url, fhir_authorization("expired-token")))
    assert response.status_code == 412
    assert response.json()["message"] == f"the EHR's FHIR server answered HTTP 401 to GET Patient/{ehr_patient}"
    assert LogEntry.objects.count() == audited


def test_an_unregistered_fhir_server_is_refused_without_a_request(
    client: Any, make_ehr: Any, analysed_patient: str, loopback: Any
) -> None:
    elsewhere = loopback(lambda request: Reply(200, {"resourceType": "Patient", "id": "x", "identifier": [MRN]}))
    ehr: Ehr = make_ehr(fhir_servers=["https://ehr.example/fhir"])
    response = ehr.call(client, no_prefetch("x", f"{elsewhere.url}/fhir", fhir_authorization()))
    assert response.status_code == 400
    assert "is not a FHIR server registered for this CDS client" in response.json()["message"]
    assert elsewhere.requests == []


def test_no_prefetch_and_no_fhir_authorization_is_a_412(client: Any, make_ehr: Any, analysed_patient: str) -> None:
    ehr: Ehr = make_ehr(fhir_servers=["https://ehr.example/fhir"])
    response = ehr.call(client, no_prefetch("ehr-42", "https://ehr.example/fhir", None))
    assert response.status_code == 412
    assert "prefetch.patient is missing and the request has no fhirAuthorization" in response.json()["message"]


@pytest.mark.parametrize(
    ("authorization", "member"),
    [
        (fhir_authorization(token_type="MAC"), "fhirAuthorization.token_type"),
        (fhir_authorization(expires_in="soon"), "fhirAuthorization.expires_in"),
        (fhir_authorization(scope=""), "fhirAuthorization.scope"),
        ({k: v for k, v in fhir_authorization().items() if k != "subject"}, "fhirAuthorization.subject"),
        (fhir_authorization(access_token=""), "fhirAuthorization.access_token"),
    ],
)
def test_an_unusable_fhir_authorization_is_a_400_naming_the_member(
    client: Any, make_ehr: Any, analysed_patient: str, authorization: dict[str, Any], member: str
) -> None:
    ehr: Ehr = make_ehr(fhir_servers=["https://ehr.example/fhir"])
    response = ehr.call(client, no_prefetch("ehr-42", "https://ehr.example/fhir", authorization))
    assert response.status_code == 400 and member in response.json()["message"]


@pytest.mark.parametrize(
    ("reply", "message"),
    [
        (Reply(500, {"resourceType": "OperationOutcome"}), "answered HTTP 500"),
        (Reply(302, b"", {"Location": "http://169.254.169.254/latest"}), "answered HTTP 302"),
        (Reply(200, {"resourceType": "Bundle"}), "did not answer a Patient"),
        (Reply(200, b"x" * (1024 * 1024 + 10)), "larger than"),
        (Reply(200, {}, delay_s=3.0), "could not be reached (ReadTimeout)"),
    ],
)
def test_ehr_fhir_server_errors_are_a_412_and_nothing_is_read(
    client: Any, make_ehr: Any, analysed_patient: str, loopback: Any, settings: Any, reply: Reply, message: str
) -> None:
    settings.CDS_HOOKS_FHIR_TIMEOUT_S = 1.0
    ehr_server = loopback(lambda request: reply)
    ehr: Ehr = make_ehr(fhir_servers=[f"{ehr_server.url}/fhir"])
    audited = LogEntry.objects.count()
    response = ehr.call(client, no_prefetch("ehr-42", f"{ehr_server.url}/fhir", fhir_authorization("t0k")))
    assert response.status_code == 412 and message in response.json()["message"], response.content
    assert LogEntry.objects.count() == audited
    assert [(r.path, r.headers.get("Authorization")) for r in ehr_server.requests] == [
        ("/fhir/Patient/ehr-42", "Bearer t0k")
    ]


def test_register_cds_client_command(db: None, tmp_path: Any) -> None:
    out = io.StringIO()
    call_command(
        "register_cds_client",
        "St Mary's Epic",
        iss="https://epic.example/cds",
        jwks_url="https://epic.example/jwks.json",
        organization="st-marys",
        fhir_server=["https://epic.example/fhir/"],
        stdout=out,
    )
    printed = json.loads(out.getvalue())
    assert printed["aud"] == SERVICE_URL and printed["fhir_servers"] == ["https://epic.example/fhir"]
    with pytest.raises(CommandError, match="iss"):
        call_command(
            "register_cds_client",
            "Again",
            iss="https://epic.example/cds",
            jwks_url="https://x.example/j",
            organization="st-marys",
            stdout=io.StringIO(),
        )
    with pytest.raises(CommandError, match="jwks_url or an inline jwks"):
        call_command(
            "register_cds_client", "Keyless", iss="https://k.example", organization="st-marys", stdout=io.StringIO()
        )


def test_a_client_with_an_inline_jwks_needs_no_key_url(
    client: Any, ehr_keys: dict[str, Any], analysed_patient: str
) -> None:
    key = ehr_keys["ES384"]
    org, _ = organization_get_or_create(slug=ORGANIZATION)
    cds_client_register(
        name="Inline", iss="https://inline.example", organization=org, jwks={"keys": [public_jwk(key, "k1")]}
    )
    now = int(time.time())
    claims = {"iss": "https://inline.example", "aud": SERVICE_URL, "iat": now, "exp": now + 60, "jti": "i-1"}
    token = jwt.encode(claims, key.private_pem, algorithm="ES384", headers={"kid": "k1", "typ": "JWT"})
    response = client.post(
        "/cds-services/ecg-ai-findings",
        hook_request("ehr-42", PREFETCH),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert response.status_code == 200 and len(response.json()["cards"]) == 2
    # With no registered JWKS URL, any jku is foreign.
    claims["jti"] = "i-2"
    token = jwt.encode(claims, key.private_pem, algorithm="ES384", headers={"kid": "k1", "jku": "https://x.example"})
    refused = client.post(
        "/cds-services/ecg-ai-findings",
        hook_request("ehr-42", PREFETCH),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    assert refused.status_code == 401 and "jku" in refused.json()["detail"]


def test_the_admin_lists_clients_and_deactivating_one_refuses_its_jwts(
    client: Any, admin_client: Any, make_ehr: Any, analysed_patient: str
) -> None:
    ehr: Ehr = make_ehr(fhir_servers=["https://ehr.example/fhir"])
    assert ehr.registration is not None
    assert ehr.iss in admin_client.get("/admin/hooks/cdsclient/").content.decode()
    url = f"/admin/hooks/cdsclient/{ehr.registration.pk}/change/"
    form = {"name": "Test EHR", "iss": ehr.iss, "jwks_url": ehr.jwks_url, "jwks": "{}"}
    bad_base = admin_client.post(url, {**form, "fhir_servers": '["ftp://ehr.example"]', "is_active": "on"})
    assert bad_base.status_code == 200 and "is not an http(s) FHIR base URL" in bad_base.content.decode()
    assert admin_client.post(url, {**form, "fhir_servers": '["https://ehr.example/fhir"]'}).status_code == 302
    response = ehr.call(client, hook_request("ehr-42", PREFETCH))
    assert response.status_code == 401 and "not a registered, active" in response.json()["detail"]
