"""SMART EHR launch of the review page (issue 15 item 6) against an authorization server the test runs.

The browser's part is played by Django's test client (our side) and ``requests`` (the EHR's
authorize endpoint); the token exchange, discovery, JWKS and Patient read are real HTTP from our
code to the loopback server.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from auditlog.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from cds.core.models import Organization
from cds.review.models import Review
from cds.smart.models import SmartClinician, SmartEhr, SmartLaunchDevice
from cds.smart.services import clinician_map, ehr_register
from tests.cds.smart.conftest import CLIENT_ID, PRACTITIONER, SmartServer
from tests.conftest import ORGANIZATION

pytestmark = pytest.mark.django_db


@pytest.fixture
def ehr(smart_server: SmartServer, flagged_review: Review, clinician: Any) -> SmartEhr:
    """The loopback EHR registered for the reviews' organisation, its clinician mapped to ``clinician``."""
    registered = ehr_register(iss=smart_server.iss, client_id=CLIENT_ID, organization_slug=ORGANIZATION)
    clinician_map(iss=smart_server.iss, fhir_user=PRACTITIONER, username=clinician.user.username)
    return registered


def _launch(browser: Client, server: SmartServer, app_context: str = "") -> Any:
    """Play the EHR launch up to our callback; return the callback's response."""
    start = browser.get("/smart/launch", {"iss": server.iss, "launch": server.launch(app_context)})
    assert start.status_code == 302, start.content
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert authorize.status_code == 302, authorize.text
    back = urlsplit(authorize.headers["Location"])
    assert back.path == "/smart/callback"
    return browser.get(back.path, {k: v[0] for k, v in parse_qs(back.query).items()})


def _outcomes() -> list[str]:
    return [
        e.additional_data["smart_launch"]
        for e in LogEntry.objects.order_by("pk")
        if e.additional_data and "smart_launch" in e.additional_data
    ]


def test_full_launch_opens_the_cards_review_logged_in_as_the_mapped_clinician(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review, clinician: Any
) -> None:
    browser = Client()
    response = _launch(browser, smart_server, app_context=f"review/{flagged_review.pk}")

    assert response.status_code == 302
    assert response["Location"] == reverse("admin:review_review_change", args=[flagged_review.pk])
    page = browser.get(response["Location"])
    assert page.status_code == 200
    assert page.wsgi_request.user == clinician.user
    assert page.wsgi_request.user.is_verified()  # what OTPAdminSite requires (ADMIN_OTP_REQUIRED)
    # What we asked the EHR for: SMART 2.x EHR launch with PKCE S256 and the minimum scopes.
    asked = smart_server.authorize_requests[0]
    assert asked["scope"] == "launch openid fhirUser patient/Patient.rs"
    assert asked["aud"] == smart_server.iss and asked["redirect_uri"] == "http://testserver/smart/callback"
    assert (
        smart_server.token_requests[0]["client_id"] == CLIENT_ID
        and "client_secret" not in smart_server.token_requests[0]
    )
    # The EHR sign-in stands in for TOTP (SMART_LAUNCH_SATISFIES_OTP, the default).
    device = SmartLaunchDevice.objects.get(user=clinician.user, ehr=ehr)
    assert browser.session["otp_device_id"] == device.persistent_id
    success = LogEntry.objects.get(additional_data__smart_launch="success")
    assert success.actor == clinician.user
    assert success.additional_data["review"] == str(flagged_review.pk)
    assert success.additional_data["fhir_user"] == PRACTITIONER


def test_es384_id_token_and_no_app_context_land_on_the_patients_worklist(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review
) -> None:
    smart_server.alg = "ES384"
    browser = Client()
    response = _launch(browser, smart_server)

    assert response.status_code == 302
    worklist = urlsplit(response["Location"])
    assert worklist.path == reverse("admin:review_review_changelist")
    assert parse_qs(worklist.query)["q"] == [flagged_review.recording.patient.logical_id]
    page = browser.get(response["Location"])
    assert page.status_code == 200 and flagged_review.recording.patient.logical_id[:8] in page.content.decode()


def test_otp_not_satisfied_when_the_setting_is_off(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review, settings: Any
) -> None:
    settings.SMART_LAUNCH_SATISFIES_OTP = False
    browser = Client()
    response = _launch(browser, smart_server)
    assert response.status_code == 302
    page = browser.get(response["Location"])
    assert page.wsgi_request.user.is_authenticated and not page.wsgi_request.user.is_verified()


def test_wrong_state_is_refused(smart_server: SmartServer, ehr: SmartEhr) -> None:
    browser = Client()
    start = browser.get("/smart/launch", {"iss": smart_server.iss, "launch": smart_server.launch()})
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    code = parse_qs(urlsplit(authorize.headers["Location"]).query)["code"][0]

    response = browser.get("/smart/callback", {"code": code, "state": "not-the-state-we-sent"})

    assert response.status_code == 400
    assert "not started from this browser" in response.content.decode()
    assert smart_server.token_requests == []  # the code was never exchanged
    assert "_auth_user_id" not in browser.session
    assert _outcomes() == ["state-mismatch"]


def test_a_state_from_another_browser_is_refused(smart_server: SmartServer, ehr: SmartEhr) -> None:
    start = Client().get("/smart/launch", {"iss": smart_server.iss, "launch": smart_server.launch()})
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(authorize.headers["Location"])

    other = Client()  # the victim's browser, handed the attacker's callback URL
    response = other.get(back.path, {k: v[0] for k, v in parse_qs(back.query).items()})

    assert response.status_code == 400 and "_auth_user_id" not in other.session


def test_bad_pkce_verifier_refused_by_the_ehr_is_a_clear_error(smart_server: SmartServer, ehr: SmartEhr) -> None:
    browser = Client()
    start = browser.get("/smart/launch", {"iss": smart_server.iss, "launch": smart_server.launch()})
    authorize = requests.get(start["Location"], allow_redirects=False, timeout=10)
    back = urlsplit(authorize.headers["Location"])
    code = parse_qs(back.query)["code"][0]
    smart_server.codes[code]["code_challenge"] = "a-challenge-our-verifier-does-not-hash-to"

    response = browser.get(back.path, {k: v[0] for k, v in parse_qs(back.query).items()})

    assert response.status_code == 502
    assert "refused to exchange the authorization code (HTTP 400, invalid_grant)" in response.content.decode()
    assert "_auth_user_id" not in browser.session
    assert _outcomes() == ["token-refused"]


def test_unregistered_iss_is_400_without_a_redirect(smart_server: SmartServer, ehr: SmartEhr) -> None:
    response = Client().get("/smart/launch", {"iss": "https://evil.example/fhir", "launch": "x"})

    assert response.status_code == 400
    assert "Location" not in response
    assert "not registered" in response.content.decode()
    entry = LogEntry.objects.get(additional_data__smart_launch="iss-not-registered")
    assert entry.additional_data["iss"] == "https://evil.example/fhir"


def test_an_ehr_without_pkce_s256_is_refused_before_any_redirect(smart_server: SmartServer, ehr: SmartEhr) -> None:
    smart_server.pkce_methods = ["plain"]
    response = Client().get("/smart/launch", {"iss": smart_server.iss, "launch": smart_server.launch()})
    assert response.status_code == 502 and "Location" not in response
    assert "does not list PKCE S256 support" in response.content.decode()
    assert smart_server.authorize_requests == []
    assert _outcomes() == ["smart-configuration-invalid"]


def test_inactive_ehr_is_not_registered(smart_server: SmartServer, ehr: SmartEhr) -> None:
    SmartEhr.objects.filter(pk=ehr.pk).update(is_active=False)
    response = Client().get("/smart/launch", {"iss": smart_server.iss, "launch": "x"})
    assert response.status_code == 400 and "Location" not in response


def test_unmapped_clinician_is_403_and_no_account_is_created(smart_server: SmartServer, ehr: SmartEhr) -> None:
    smart_server.fhir_user = "Practitioner/locum-7"
    users = get_user_model().objects.count()
    browser = Client()

    response = _launch(browser, smart_server)

    assert response.status_code == 403
    assert f"{smart_server.iss}/Practitioner/locum-7 has no account here" in response.content.decode()
    assert get_user_model().objects.count() == users
    assert "_auth_user_id" not in browser.session
    assert _outcomes() == ["clinician-not-mapped"]
    refusal = LogEntry.objects.get(additional_data__smart_launch="clinician-not-mapped")
    assert refusal.additional_data["fhir_user"] == "Practitioner/locum-7" and refusal.actor is None


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda s: setattr(s, "id_token_aud", "some-other-app"), id="wrong-aud"),
        pytest.param(lambda s: setattr(s, "sign_with_other_key", True), id="bad-signature"),
    ],
)
def test_bad_id_token_is_refused(smart_server: SmartServer, ehr: SmartEhr, tamper: Any) -> None:
    tamper(smart_server)
    browser = Client()

    response = _launch(browser, smart_server)

    assert response.status_code == 401
    assert "id_token was refused" in response.content.decode()
    assert "_auth_user_id" not in browser.session
    assert _outcomes() == ["id-token-invalid"]


def test_a_patient_of_another_organisation_is_not_shown(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review
) -> None:
    # The same EHR now launches for another hospital: our patient (and the card's review) is not theirs.
    other = Organization.objects.create(slug="other-hospital", name="Other hospital")
    SmartEhr.objects.filter(pk=ehr.pk).update(organization=other)
    browser = Client()

    response = _launch(browser, smart_server, app_context=f"review/{flagged_review.pk}")

    assert response.status_code == 404
    assert "Location" not in response
    assert "No ECG of this patient has reached Other hospital" in response.content.decode()
    assert _outcomes() == ["patient-not-found"]


def test_app_context_naming_another_patients_review_opens_only_this_patients_worklist(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review, service_account: Any
) -> None:
    # The EHR launches for patient B while the appContext names patient A's review (a stale or forged card).
    other_patient = {"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0002"}]}
    patient_b = service_account.post("/fhir/Patient", other_patient).json()["id"]
    smart_server.patient_identifier = {"system": "urn:oid:1.2.3.4.mrn", "value": "MRN-0002"}
    browser = Client()

    response = _launch(browser, smart_server, app_context=f"review/{flagged_review.pk}")

    assert response.status_code == 302
    worklist = urlsplit(response["Location"])
    assert worklist.path == reverse("admin:review_review_changelist")
    assert parse_qs(worklist.query)["q"] == [patient_b]


def test_the_clinicians_own_permissions_still_apply(
    smart_server: SmartServer, ehr: SmartEhr, flagged_review: Review, outside_clinician: Any
) -> None:
    # Mapped to a clinician whose care team does not cover ward-a: the review is not opened.
    SmartClinician.objects.filter(ehr=ehr).update(user=outside_clinician.user)
    browser = Client()

    response = _launch(browser, smart_server, app_context=f"review/{flagged_review.pk}")

    assert response.status_code == 302
    assert urlsplit(response["Location"]).path == reverse("admin:review_review_changelist")
    assert browser.get(reverse("admin:review_review_change", args=[flagged_review.pk])).status_code == 403
