from __future__ import annotations

from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "cds.review"
    label = "review"
    verbose_name = "Clinical review and quality audit"

    def ready(self) -> None:
        from auditlog.registry import auditlog

        from cds.review.models import CareTeam, CareTeamSource, Review, ReviewRevision

        # Model changes go to django-auditlog's LogEntry; "viewed" entries are sent explicitly
        # (auditlog's ``accessed`` signal) by the review page.
        auditlog.register(Review)
        auditlog.register(ReviewRevision)
        auditlog.register(CareTeam, m2m_fields={"members"})
        auditlog.register(CareTeamSource)
