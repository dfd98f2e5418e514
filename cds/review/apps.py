from __future__ import annotations

from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "cds.review"
    label = "review"
    verbose_name = "Clinical review and quality audit"

    def ready(self) -> None:
        # AppConfig.ready(): the models and auditlog's registry are loaded only once the apps are.
        from auditlog.registry import auditlog  # noqa: PLC0415 AppConfig.ready()

        from cds.review.models import CareTeam, CareTeamSource, Review, ReviewRevision  # noqa: PLC0415 ready()

        # Model changes go to django-auditlog's LogEntry; "viewed" entries are sent explicitly
        # (auditlog's ``accessed`` signal) by the review page.
        auditlog.register(Review)
        auditlog.register(ReviewRevision)
        auditlog.register(CareTeam, m2m_fields={"members"})
        auditlog.register(CareTeamSource)
