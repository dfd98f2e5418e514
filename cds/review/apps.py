from __future__ import annotations

from django.apps import AppConfig


class ReviewConfig(AppConfig):
    name = "cds.review"
    label = "review"
    verbose_name = "Clinical review and quality audit"

    def ready(self) -> None:
        # AppConfig.ready(): the models and auditlog's registry are loaded only once the apps are.
        from auditlog.registry import auditlog  # noqa: PLC0415 AppConfig.ready()

        from cds.review.models import (  # noqa: PLC0415 ready()
            CardFeedback,
            CareTeam,
            CareTeamSource,
            DriftAlarm,
            ModelCandidate,
            PromotionDecision,
            Review,
            ReviewRevision,
            SiteRecalibration,
        )

        # Model changes go to django-auditlog's LogEntry; "viewed" entries are sent explicitly
        # (auditlog's ``accessed`` signal) by the review page.
        auditlog.register(Review)
        auditlog.register(ReviewRevision)
        auditlog.register(CareTeam, m2m_fields={"members"})
        auditlog.register(CareTeamSource)
        auditlog.register(DriftAlarm)
        auditlog.register(ModelCandidate)
        auditlog.register(PromotionDecision)
        auditlog.register(SiteRecalibration)
        auditlog.register(CardFeedback)  # CDS Hooks feedback (issue 15): written by EHR clients
        # Who may reach patient data: API clients (never the secret's hash), users and their groups
        # (never the password hash), groups' permissions, organisations (issue 13).
        from django.contrib.auth import get_user_model  # noqa: PLC0415 ready()
        from django.contrib.auth.models import Group  # noqa: PLC0415 ready()

        from cds.core.models import Organization  # noqa: PLC0415 ready()
        from cds.oauth.models import ApiClient  # noqa: PLC0415 ready()

        auditlog.register(ApiClient, exclude_fields=["secret_hash"])
        auditlog.register(
            get_user_model(), exclude_fields=["password", "last_login"], m2m_fields={"groups", "user_permissions"}
        )
        auditlog.register(Group, m2m_fields={"permissions"})
        auditlog.register(Organization)
