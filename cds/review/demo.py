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

from cds.core.models import DEFAULT_ORGANIZATION_SLUG, Organization
from cds.core.services import organization_get_or_create
from cds.ecg.models import EcgRecording
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
    organization = _organization_of(sources)
    team, _ = CareTeam.objects.get_or_create(name=DEMO_CARE_TEAM, defaults={"organization": organization})
    if team.organization_id != organization.pk:  # care teams cover their own organisation's ECGs only
        team.organization = organization
        team.save(update_fields=["organization"])
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


def _organization_of(sources: list[str]) -> Organization:
    """Return the organisation of the demo sources' ECGs (the sending client's), else the default one."""
    recording = EcgRecording.objects.filter(received_from__in=sources).select_related("organization").first()
    if recording is not None:
        return recording.organization
    return organization_get_or_create(slug=DEFAULT_ORGANIZATION_SLUG)[0]


def demo_flagged_reviews(*, sources: list[str], limit: int = 5) -> list[int]:
    """Return the ids of up to ``limit`` flagged-queue reviews from ``sources`` (links printed by the demo)."""
    reviews = Review.objects.filter(queue=Review.Queue.FLAGGED, recording__received_from__in=sources)
    return list(reviews.order_by("pk").values_list("pk", flat=True)[:limit])
