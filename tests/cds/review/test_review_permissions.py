"""Who can see and do what in the admin, per role, including the refusals."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from cds.review.models import Review

pytestmark = pytest.mark.django_db

WORKLIST = "/admin/review/review/"
QUALITY = "/admin/review/qualityprediction/"
DASHBOARD = "/admin/review/qualityprediction/dashboard/"


def page(review: Review) -> str:
    return f"/admin/review/review/{review.pk}/change/"


def act(review: Review, action: str) -> str:
    return f"/admin/review/review/{review.pk}/act/{action}/"


def test_it_shows_the_care_teams_ecgs_to_its_clinician(clinician: Any, flagged_review: Review) -> None:
    listing = clinician.client.get(WORKLIST)
    assert listing.status_code == 200 and f"Review {flagged_review.pk}" in listing.content.decode()
    assert clinician.client.get(page(flagged_review)).status_code == 200


def test_it_hides_other_sources_ecgs_from_a_clinician_outside_the_care_team(
    outside_clinician: Any, flagged_review: Review
) -> None:
    listing = outside_clinician.client.get(WORKLIST).content.decode()
    assert f"Review {flagged_review.pk}" not in listing and "pending <b>0</b>" in listing
    assert outside_clinician.client.get(page(flagged_review)).status_code == 403
    assert outside_clinician.client.post(act(flagged_review, "claim")).status_code == 403
    assert Review.objects.get(pk=flagged_review.pk).status == "pending"


def test_it_keeps_the_unscoped_ecg_admin_from_clinicians(clinician: Any, auditor: Any, flagged_review: Review) -> None:
    # The ECG admin lists every source; clinicians see ECGs only through their care-team worklists.
    assert clinician.client.get("/admin/ecg/ecgrecording/").status_code == 403
    assert auditor.client.get("/admin/ecg/ecgrecording/").status_code == 200


def test_it_lets_a_clinician_review_but_not_sign(clinician: Any, flagged_review: Review) -> None:
    assert clinician.client.post(act(flagged_review, "claim")).status_code == 302
    assert clinician.client.post(act(flagged_review, "accept")).status_code == 302
    assert clinician.client.post(act(flagged_review, "sign")).status_code == 403
    assert Review.objects.get(pk=flagged_review.pk).status == "accepted"
    assert "Sign report" not in clinician.client.get(page(flagged_review)).content.decode()


def test_it_lets_a_senior_clinician_sign(clinician: Any, senior_clinician: Any, flagged_review: Review) -> None:
    clinician.client.post(act(flagged_review, "claim"))
    clinician.client.post(act(flagged_review, "accept"))
    assert 'id="sign"' in senior_clinician.client.get(page(flagged_review)).content.decode()
    assert (
        senior_clinician.client.post(
            act(flagged_review, "sign"), {"report_text": "Signed text.", "password": "pw-senior"}
        ).status_code
        == 302
    )
    assert Review.objects.get(pk=flagged_review.pk).status == "signed"


def test_it_gives_the_auditor_read_only_access_to_everything(auditor: Any, flagged_review: Review) -> None:
    assert auditor.client.get(WORKLIST).status_code == 200
    assert auditor.client.get(page(flagged_review)).status_code == 200
    assert auditor.client.get(QUALITY).status_code == 200
    assert auditor.client.get(DASHBOARD).status_code == 200
    assert auditor.client.get("/admin/auditlog/logentry/").status_code == 200
    for action in ("claim", "accept", "sign"):
        assert auditor.client.post(act(flagged_review, action)).status_code == 403
    assert "Claim" not in auditor.client.get(page(flagged_review)).content.decode()
    assert Review.objects.get(pk=flagged_review.pk).status == "pending"


def test_it_keeps_quality_views_from_clinicians(clinician: Any, flagged_review: Review) -> None:
    assert clinician.client.get(QUALITY).status_code == 403
    assert clinician.client.get(DASHBOARD).status_code == 403
    assert clinician.client.get(QUALITY + "export.csv").status_code == 403


def test_it_gives_an_integration_client_no_admin_access(integration_user: Any, flagged_review: Review) -> None:
    for url in (WORKLIST, page(flagged_review), QUALITY, DASHBOARD):
        assert integration_user.client.get(url).status_code == 403, url


def test_it_sends_anonymous_users_to_the_login_page(flagged_review: Review) -> None:
    response = Client().get(page(flagged_review))
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_it_gives_the_administrator_group_every_permission(db: None) -> None:
    from django.contrib.auth.models import Group, Permission

    from cds.review.roles import roles_setup

    counts = roles_setup()
    assert Group.objects.get(name="administrator").permissions.count() == Permission.objects.count()
    assert counts["integration client"] == 0
    auditor_perms = set(Group.objects.get(name="quality auditor").permissions.values_list("codename", flat=True))
    assert not any(p.startswith(("change_", "add_", "delete_")) for p in auditor_perms)
    assert "sign_review" in Group.objects.get(name="senior clinician").permissions.values_list("codename", flat=True)
    assert "sign_review" not in Group.objects.get(name="clinician").permissions.values_list("codename", flat=True)
