"""Create or reset the local demo users (clinician, senior clinician, quality auditor) and print them as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any
from urllib.parse import urlparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.demo import DEMO_CARE_TEAM, demo_flagged_reviews, demo_users_create

_LOCAL_HOSTS = {"127.0.0.1", "localhost", "::1", "testserver"}


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--source",
            action="append",
            default=[],
            help="an ECG source (the sending API client's client_id) the demo care team covers; repeatable",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        # Printed passwords belong on a developer's machine only, never on a reachable deployment.
        host = urlparse(settings.PUBLIC_BASE_URL).hostname or ""
        if host not in _LOCAL_HOSTS:
            raise CommandError(f"demo users are for a local stack only; PUBLIC_BASE_URL host is {host!r}")
        users = demo_users_create(sources=options["source"])
        result = {
            "care_team": DEMO_CARE_TEAM,
            "sources": options["source"],
            "users": [asdict(u) for u in users],
            "flagged_reviews": demo_flagged_reviews(sources=options["source"]),
        }
        self.stdout.write(json.dumps(result))
