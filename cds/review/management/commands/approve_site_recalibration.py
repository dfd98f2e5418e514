"""Approve a draft site recalibration (quality auditors only): the site's served probability uses it from now on.

The site's previously approved artefact is retired; both changes are audited with the approver as actor."""

from __future__ import annotations

from typing import Any

from auditlog.context import set_actor
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.core.exceptions import ApplicationError
from cds.review.models import SiteRecalibration
from cds.review.recalibration import approve_recalibration


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("id", type=int, help="the draft's id (printed by fit_site_recalibration)")
        parser.add_argument("--by", required=True, help="username of the approving quality auditor")

    def handle(self, *args: Any, **options: Any) -> None:
        user = get_user_model().objects.filter(username=options["by"], is_active=True).first()
        if user is None:
            raise CommandError(f"no active user {options['by']!r}")
        artefact = SiteRecalibration.objects.filter(pk=options["id"]).first()
        if artefact is None:
            raise CommandError(f"no site recalibration {options['id']}")
        try:
            with set_actor(user):
                artefact = approve_recalibration(recalibration=artefact, user=user)
        except ApplicationError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"approved {artefact.site} v{artefact.version} for {artefact.combiner_version} by {options['by']}"
        )
