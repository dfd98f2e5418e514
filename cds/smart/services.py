"""The EHR launch: from ``launch`` + ``iss`` to the EHR's authorize endpoint, and back to a review page.

SMART App Launch 2.x, EHR launch, as a public client with PKCE S256 (no client secret: we hold none
for the EHR, and PKCE binds the code to the browser session that started the launch). The CDS card's
``appContext`` (CDS Hooks 2.0 Link) comes back in the token response and names the review to open.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import django_otp
from auditlog.models import LogEntry
from django.conf import settings
from django.contrib.auth import get_user_model, login
from django.contrib.contenttypes.models import ContentType
from django.http import HttpRequest
from django.urls import reverse

from cds.core.models import Organization
from cds.review.models import Review
from cds.review.selectors import review_visible
from cds.smart import ehr_client
from cds.smart.errors import LaunchRefused
from cds.smart.models import SmartClinician, SmartEhr, SmartLaunchDevice
from cds.smart.selectors import (
    clinician_user,
    ehr_for_iss,
    fhir_user_url,
    patients_of_ehr_patient,
    review_in_context,
)

SESSION_KEY = "smart_launches"
# The minimum we need: who the clinician is (openid fhirUser), the launch context, and the
# Patient's identifiers to find our copy of the patient.
SCOPE = "launch openid fhirUser patient/Patient.rs"
_PENDING_MAX = 5  # launches one browser may have in flight (several cards opened at once)
_PENDING_TTL_S = 600


def redirect_uri() -> str:
    return settings.PUBLIC_BASE_URL + reverse("smart-callback")


def launch_begin(*, session: Any, iss: str, launch: str) -> str:
    """Return the EHR's authorize URL for this launch; remember its state and PKCE verifier in ``session``."""
    ehr = ehr_for_iss(iss) if iss else None
    if ehr is None:
        raise LaunchRefused(400, "iss-not-registered", "This EHR (iss) is not registered for SMART launches here.")
    if not launch:
        raise LaunchRefused(400, "launch-missing", "The EHR launch carries no launch parameter.")
    config = ehr_client.smart_configuration(ehr.iss)
    state, verifier = secrets.token_urlsafe(32), secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    now = time.time()
    pending = {k: v for k, v in session.get(SESSION_KEY, {}).items() if now - v["at"] < _PENDING_TTL_S}
    pending = dict(sorted(pending.items(), key=lambda item: item[1]["at"])[-(_PENDING_MAX - 1) :])
    pending[state] = {"ehr": ehr.pk, "verifier": verifier, "at": now}
    session[SESSION_KEY] = pending
    query = {
        "response_type": "code",
        "client_id": ehr.client_id,
        "redirect_uri": redirect_uri(),
        "launch": launch,
        "scope": SCOPE,
        "state": state,
        "aud": ehr.iss,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    endpoint = config["authorization_endpoint"]
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{urlencode(query)}"  # some EHRs put a tenant in the query


@dataclass(frozen=True)
class Launched:
    """A completed launch: who, from which EHR, and where they go."""

    ehr: SmartEhr
    user: Any
    fhir_user: str
    patient_id: str
    review: Review | None
    url: str


def launch_complete(*, session: Any, state: str, code: str, error: str = "") -> Launched:
    """Check ``state``, exchange ``code``, verify the id_token, map the clinician and find the review.

    Raises ``LaunchRefused`` (with ``ehr`` attached when known) for anything that does not hold.
    """
    pending = session.get(SESSION_KEY, {})
    started = pending.pop(state, None) if state else None
    session[SESSION_KEY] = pending  # a state is used once, whatever happens next
    if started is None or time.time() - started["at"] >= _PENDING_TTL_S:
        raise LaunchRefused(400, "state-mismatch", "This launch was not started from this browser, or it expired.")
    ehr = SmartEhr.objects.filter(pk=started["ehr"], is_active=True).select_related("organization").first()
    if ehr is None:
        raise LaunchRefused(400, "iss-not-registered", "This EHR is no longer registered for SMART launches here.")
    try:
        return _complete(ehr=ehr, started=started, code=code, error=error)
    except LaunchRefused as refused:
        refused.ehr = ehr
        raise


def _complete(*, ehr: SmartEhr, started: dict[str, Any], code: str, error: str) -> Launched:
    if error or not code:
        raise LaunchRefused(
            403, "authorization-denied", f"The EHR did not authorise the launch ({error or 'no code'})."
        )
    config = ehr_client.smart_configuration(ehr.iss)
    token = ehr_client.token_exchange(
        config=config, client_id=ehr.client_id, code=code, verifier=started["verifier"], redirect_uri=redirect_uri()
    )
    id_token, patient_id = token.get("id_token"), token.get("patient")
    if not isinstance(id_token, str) or not isinstance(patient_id, str) or not patient_id:
        raise LaunchRefused(502, "token-incomplete", "The EHR's token response lacks the id_token or the patient.")
    claims = ehr_client.id_token_claims(config=config, iss=ehr.iss, id_token=id_token, client_id=ehr.client_id)
    fhir_user = claims.get("fhirUser")
    if not isinstance(fhir_user, str) or not fhir_user:
        raise LaunchRefused(403, "fhir-user-missing", "The EHR's id_token names no fhirUser.")
    user = clinician_user(ehr=ehr, fhir_user=fhir_user)
    if user is None or not user.is_staff:
        refused = LaunchRefused(
            403,
            "clinician-not-mapped",
            f"{fhir_user_url(ehr=ehr, fhir_user=fhir_user)} has no account here: ask an administrator to map it.",
        )
        refused.details = {"fhir_user": fhir_user[:500]}
        raise refused
    access_token = token.get("access_token")
    ehr_patient = ehr_client.ehr_patient(iss=ehr.iss, patient_id=patient_id, access_token=str(access_token or ""))
    patients = patients_of_ehr_patient(ehr=ehr, patient_id=patient_id, ehr_patient=ehr_patient)
    if not patients:
        raise LaunchRefused(404, "patient-not-found", f"No ECG of this patient has reached {ehr.organization.name}.")
    app_context = token.get("appContext")
    review = review_in_context(app_context=app_context, patients=patients) if isinstance(app_context, str) else None
    if review is not None and not review_visible(review=review, user=user):
        review = None  # not this clinician's care team: the worklist (scoped to it) instead
    return Launched(
        ehr=ehr,
        user=user,
        fhir_user=fhir_user,
        patient_id=patient_id,
        review=review,
        url=_review_url(review) if review is not None else _worklist_url(patients[0].logical_id),
    )


def _review_url(review: Review) -> str:
    name = "review_review" if review.queue == Review.Queue.FLAGGED else "review_reannotationreview"
    return reverse(f"admin:{name}_change", args=[review.pk])


def _worklist_url(patient_logical_id: str) -> str:
    # The worklist searches recording__patient__logical_id; it stays scoped to the user's care teams.
    return f"{reverse('admin:review_review_changelist')}?{urlencode({'q': patient_logical_id})}"


def clinician_login(*, request: HttpRequest, launched: Launched) -> None:
    """Log the mapped user in; with ``SMART_LAUNCH_SATISFIES_OTP`` the EHR sign-in counts as the second factor."""
    login(request, launched.user, backend="django.contrib.auth.backends.ModelBackend")
    if settings.SMART_LAUNCH_SATISFIES_OTP:
        device, _ = SmartLaunchDevice.objects.get_or_create(
            user=launched.user, ehr=launched.ehr, defaults={"name": f"SMART launch from {launched.ehr}"}
        )
        django_otp.login(request, device)


def launch_audit(
    *,
    request: HttpRequest,
    outcome: str,
    ehr: SmartEhr | None,
    user: Any = None,
    details: dict[str, Any] | None = None,
) -> LogEntry:
    """Record one launch (``outcome``: ``success`` or the refusal's reason) in the audit trail."""
    return LogEntry.objects.create(
        content_type=ContentType.objects.get_for_model(SmartEhr),
        object_pk=str(ehr.pk) if ehr is not None else "",
        object_repr=f"SMART launch from {ehr.iss if ehr else 'an unregistered EHR'}: {outcome}"[:200],
        action=LogEntry.Action.ACCESS,
        actor=user,
        remote_addr=request.META.get("REMOTE_ADDR"),
        additional_data={"smart_launch": outcome, **(details or {})},
    )


def ehr_register(*, iss: str, client_id: str, organization_slug: str, name: str = "", active: bool = True) -> SmartEhr:
    """Register (or update) the EHR whose FHIR base is ``iss`` for SMART launches of ``organization_slug``."""
    organization = Organization.objects.get(slug=organization_slug)
    ehr = SmartEhr.objects.filter(iss=iss.rstrip("/")).first() or SmartEhr(iss=iss.rstrip("/"))
    ehr.client_id, ehr.organization, ehr.name, ehr.is_active = client_id, organization, name, active
    ehr.full_clean()  # before saving: a malformed iss is refused, not stored
    ehr.save()
    return ehr


def clinician_map(*, iss: str, fhir_user: str, username: str) -> SmartClinician:
    """Map the EHR's clinician ``fhir_user`` to the existing Django user ``username`` (never creates one)."""
    ehr = SmartEhr.objects.get(iss=iss.rstrip("/"))
    user = get_user_model().objects.get(username=username)
    mapping, _ = SmartClinician.objects.update_or_create(
        ehr=ehr, fhir_user=fhir_user_url(ehr=ehr, fhir_user=fhir_user), defaults={"user": user}
    )
    return mapping
