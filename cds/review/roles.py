"""Least-privilege groups for the admin (``python manage.py setup_roles``)."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission
from django.db import transaction

CLINICIAN = "clinician"
SENIOR_CLINICIAN = "senior clinician"
QUALITY_AUDITOR = "quality auditor"
INTEGRATION_CLIENT = "integration client"
ADMINISTRATOR = "administrator"

# No ecg.view_* for clinicians: the ECG admin lists every source, while the review pages are
# scoped to the clinician's care teams and show everything a review needs.
_CLINICIAN = [
    "review.view_review", "review.change_review", "review.view_reannotationreview",
    "review.change_reannotationreview",
]  # fmt: skip
_AUDITOR = [
    "review.view_quality", "review.view_qualityprediction", "review.view_review", "review.view_reannotationreview",
    "review.view_reviewrevision", "review.view_careteam", "analysis.view_prediction", "analysis.view_analysisjob",
    "ecg.view_ecgrecording", "ecg.view_patient", "auditlog.view_logentry",
    # Issue 19: per-site recalibrations are a quality decision, approved by auditors only.
    "review.view_siterecalibration", "review.approve_siterecalibration",
    # Candidates and promotion decisions: read-only (registration and promotion are commands).
    "review.view_modelcandidate", "review.view_promotiondecision",
]  # fmt: skip
ROLE_PERMISSIONS: dict[str, list[str] | None] = {
    CLINICIAN: _CLINICIAN,
    SENIOR_CLINICIAN: [*_CLINICIAN, "review.sign_review"],
    QUALITY_AUDITOR: _AUDITOR,  # read-only: no change permission on clinical data
    INTEGRATION_CLIENT: [],  # API only (OAuth client credentials); no admin permission at all
    ADMINISTRATOR: None,  # every permission
}


def _permissions(names: list[str]) -> list[Permission]:
    found = []
    for name in names:
        app_label, codename = name.split(".", 1)
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


@transaction.atomic
def roles_setup() -> dict[str, int]:
    """Create or reset the role groups to exactly their permissions; return {group: n permissions}."""
    counts = {}
    for name, names in ROLE_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        permissions = list(Permission.objects.all()) if names is None else _permissions(names)
        group.permissions.set(permissions)
        counts[name] = len(permissions)
    return counts
