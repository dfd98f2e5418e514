"""`manage.py demo_users` (make demo / make up): one login per role, clinicians on the demo ECGs' care team."""

from __future__ import annotations

import json
from collections.abc import Callable
from io import StringIO
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from cds.analysis.models import AnalysisJob
from cds.review.models import Review

WORKLIST = "/admin/review/review/"
DASHBOARD = "/admin/review/qualityprediction/dashboard/"


def _demo_users(*sources: str) -> dict[str, Any]:
    out = StringIO()
    call_command("demo_users", *[arg for s in sources for arg in ("--source", s)], stdout=out)
    return json.loads(out.getvalue())


def _login(username: str, password: str) -> Client:
    client = Client()
    # The real login form (axes backend and all), as a person at the browser would use it.
    response = client.post("/admin/login/?next=/admin/", {"username": username, "password": password})
    assert response.status_code == 302 and response.url == "/admin/", response.content[:500]
    return client


@pytest.mark.django_db
def test_each_demo_user_logs_in_and_sees_their_view(analysed_ecg: Callable[..., AnalysisJob]) -> None:
    mine = analysed_ecg(ecg_id=63, score=3.0, source="demo-ehr-client")
    other = analysed_ecg(ecg_id=9, score=3.0, source="another-ward", effective="2024-03-02T10:00:00Z")
    mine_review, other_review = (Review.objects.get(job=job) for job in (mine, other))

    demo = _demo_users("demo-ehr-client")
    users = {u["role"]: u for u in demo["users"]}
    assert set(users) == {"clinician", "senior clinician", "quality auditor"}
    assert len({u["password"] for u in demo["users"]}) == 3
    assert demo["flagged_reviews"] == [mine_review.pk]  # the link the demo prints: on the team's source only

    clinician = _login(users["clinician"]["username"], users["clinician"]["password"])
    worklist = clinician.get(WORKLIST)
    assert worklist.status_code == 200
    assert f"/admin/review/review/{mine_review.pk}/change/" in worklist.content.decode()
    assert f"/admin/review/review/{other_review.pk}/change/" not in worklist.content.decode()
    assert clinician.get(f"/admin/review/review/{mine_review.pk}/change/").status_code == 200
    assert clinician.get(DASHBOARD).status_code == 403  # the quality dashboard is the auditors'

    senior = _login(users["senior clinician"]["username"], users["senior clinician"]["password"])
    assert senior.get(f"/admin/review/review/{mine_review.pk}/change/").status_code == 200

    auditor = _login(users["quality auditor"]["username"], users["quality auditor"]["password"])
    assert auditor.get(DASHBOARD).status_code == 200
    # Read-only: the auditor sees the review but has no change permission on it.
    assert auditor.post(f"/admin/review/review/{mine_review.pk}/act/claim/").status_code == 403


@pytest.mark.django_db
def test_a_second_run_resets_the_passwords_and_keeps_one_care_team() -> None:
    first = {u["username"]: u["password"] for u in _demo_users("src-1")["users"]}
    second = {u["username"]: u["password"] for u in _demo_users("src-1", "src-2")["users"]}
    assert set(first) == set(second)
    assert all(first[name] != second[name] for name in first)
    _login("demo-clinician", second["demo-clinician"])
    refused = Client().post("/admin/login/", {"username": "demo-clinician", "password": first["demo-clinician"]})
    assert refused.status_code == 200  # the login form again, with its error

    from cds.review.models import CareTeam

    team = CareTeam.objects.get(name="Demo ward")
    assert sorted(team.sources.values_list("source", flat=True)) == ["src-1", "src-2"]
    assert sorted(team.members.values_list("username", flat=True)) == ["demo-clinician", "demo-senior"]


@pytest.mark.django_db
def test_it_refuses_a_non_local_deployment(settings: Any) -> None:
    settings.PUBLIC_BASE_URL = "https://cds.hospital.example"
    with pytest.raises(CommandError, match="local stack only"):
        _demo_users("src-1")
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(username__startswith="demo-").exists()
