"""Create the least-privilege role groups: clinician, senior clinician, quality auditor, integration client, administrator."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from cds.review.roles import roles_setup


class Command(BaseCommand):
    help = __doc__

    def handle(self, *args: Any, **options: Any) -> None:
        for group, count in roles_setup().items():
            self.stdout.write(f"{group}: {count} permissions")
