"""Audit trail (auditlog, FHIR AuditEvent export), login lockout (axes) and the optional TOTP factor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from auditlog.models import LogEntry
from django.contrib import admin
from django.core.management import call_command
from django.test import Client
from fhir.resources.R4B.bundle import Bundle

from cds.review.models import Review, ReviewRevision

pytestmark = pytest.mark.django_db


def test_it_records_who_changed_and_viewed_a_review(flagged_review: Review, clinician: Any) -> None:
    act = f"/admin/review/review/{flagged_review.pk}/act/"
    clinician.client.post(act + "claim/")
    clinician.client.post(act + "reject/", {"reason": "noise"})
    clinician.client.get(f"/admin/review/review/{flagged_review.pk}/change/")
    entries = LogEntry.objects.filter(actor=clinician.user)
    review_updates = entries.filter(content_type__model="review", action=LogEntry.Action.UPDATE)
    assert any("claimed" in json.dumps(e.changes) for e in review_updates)
    assert entries.filter(content_type__model="reviewrevision", action=LogEntry.Action.CREATE).exists()
    assert entries.filter(action=LogEntry.Action.ACCESS, object_pk=str(flagged_review.pk)).exists()
    assert ReviewRevision.objects.filter(review=flagged_review).count() == 2


def test_it_exports_the_audit_trail_as_fhir_audit_events(
    flagged_review: Review, clinician: Any, tmp_path: Path
) -> None:
    clinician.client.post(f"/admin/review/review/{flagged_review.pk}/act/claim/")
    clinician.client.get(f"/admin/review/review/{flagged_review.pk}/change/")
    out = tmp_path / "audit.json"
    call_command("export_audit_events", out=str(out))
    bundle = json.loads(out.read_text())
    Bundle.model_validate(bundle)  # every AuditEvent validates as R4
    events = [e["resource"] for e in bundle["entry"]]
    reads = [e for e in events if e["action"] == "R"]
    assert reads and reads[0]["agent"][0]["who"]["identifier"]["value"] == "clin"
    assert reads[0]["entity"][0]["what"]["identifier"] == {
        "system": "urn:ecg-cds:review.review",
        "value": str(flagged_review.pk),
    }
    assert {"C", "U", "R"} <= {e["action"] for e in events}


def test_it_locks_the_admin_login_after_repeated_failures(clinician: Any, settings: Any) -> None:
    client = Client()
    for _ in range(settings.AXES_FAILURE_LIMIT - 1):
        response = client.post("/admin/login/", {"username": "clin", "password": "wrong"})
        assert response.status_code == 200  # the form again, with an error
    assert client.post("/admin/login/", {"username": "clin", "password": "wrong"}).status_code == 429
    locked = client.post("/admin/login/?next=/admin/", {"username": "clin", "password": "pw-clin"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_it_requires_a_totp_token_when_the_second_factor_is_on(clinician: Any, monkeypatch: Any) -> None:
    from django_otp.admin import OTPAdminSite
    from django_otp.oath import totp
    from django_otp.plugins.otp_totp.models import TOTPDevice

    monkeypatch.setattr(admin.site, "__class__", OTPAdminSite)  # what ADMIN_OTP_REQUIRED=true does in cds/urls.py
    password_only = Client()
    password_only.post("/admin/login/", {"username": "clin", "password": "pw-clin"})
    assert password_only.get("/admin/review/review/").status_code == 302  # back to the login page
    device = TOTPDevice.objects.create(user=clinician.user, name="phone", confirmed=True)
    with_token = Client()
    form = {
        "username": "clin", "password": "pw-clin", "otp_device": device.persistent_id,
        "otp_token": f"{totp(device.bin_key):06d}",
    }  # fmt: skip
    assert with_token.post("/admin/login/", form).status_code == 302
    assert with_token.get("/admin/review/review/").status_code == 200
