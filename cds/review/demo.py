"""Demo users for a local stack (``make demo`` / ``make up``): one per clinical role, on one care team.

The passwords are random per run and printed by the caller, so a demo stack never shares a known
password; ``manage.py demo_users`` refuses to run against a non-local ``PUBLIC_BASE_URL``.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from cds.review.models import CareTeam, CareTeamSource, Review
from cds.review.roles import CLINICIAN, QUALITY_AUDITOR, SENIOR_CLINICIAN, roles_setup

DEMO_CARE_TEAM = "Demo ward"
# username -> role group; usernames say what they are so nobody mistakes them for real accounts.
DEMO_USERS = {
    "demo-clinician": CLINICIAN,
    "demo-senior": SENIOR_CLINICIAN,
    "demo-auditor": QUALITY_AUDITOR,
}
# Auditors see every source (selectors.user_sees_all_sources); only the clinicians need the care team.
_ON_CARE_TEAM = {CLINICIAN, SENIOR_CLINICIAN}


@dataclass(frozen=True)
class DemoUser:
    username: str
    password: str
    role: str


@transaction.atomic
def demo_users_create(*, sources: list[str]) -> list[DemoUser]:
    """Create or reset the demo users with fresh passwords; put the clinicians on a care team of ``sources``.

    Idempotent apart from the passwords: a second run resets them and keeps the care team.
    """
    roles_setup()
    team, _ = CareTeam.objects.get_or_create(name=DEMO_CARE_TEAM)
    for source in sources:
        CareTeamSource.objects.get_or_create(team=team, source=source)
    created = []
    user_model = get_user_model()
    for username, role in DEMO_USERS.items():
        user, _ = user_model.objects.get_or_create(username=username)
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.is_staff = True  # the review pages are admin pages
        user.is_superuser = False
        user.is_active = True
        user.save()
        user.groups.set([Group.objects.get(name=role)])
        if role in _ON_CARE_TEAM:
            team.members.add(user)
        else:
            team.members.remove(user)
        created.append(DemoUser(username=username, password=password, role=role))
    return created


def demo_flagged_reviews(*, sources: list[str], limit: int = 5) -> list[int]:
    """Return the ids of up to ``limit`` flagged-queue reviews from ``sources`` (links printed by the demo)."""
    reviews = Review.objects.filter(queue=Review.Queue.FLAGGED, recording__received_from__in=sources)
    return list(reviews.order_by("pk").values_list("pk", flat=True)[:limit])
