"""``manage.py create_api_client NAME``: create an OAuth2 client and print its credentials once."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.oauth.services import api_client_create

# What an EHR integration engine needs to send ECGs and read them back: create, read and search
# Patients and Observations. Transaction/batch Bundles need no scope of their own: each entry is
# checked against its resource type. No update/delete: the API does not offer them.
DEFAULT_SCOPES = "system/Patient.crs system/Observation.crs"


class Command(BaseCommand):
    help = (
        "Create an API client for the OAuth2 client-credentials grant and print, as one JSON object, "
        "its client_id, client_secret, token_url and scopes. The secret is stored hashed and shown only "
        f"now. Default scopes: {DEFAULT_SCOPES!r} (create, read and search Patients and Observations)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who the client is, e.g. 'Epic integration engine'")
        parser.add_argument(
            "--scopes",
            default=DEFAULT_SCOPES,
            help=(
                "space-separated SMART system scopes, v2 (system/Observation.crs, system/*.rs) "
                f"or v1 (system/Patient.read, system/*.write); default {DEFAULT_SCOPES!r}"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            created = api_client_create(name=options["name"], scopes=options["scopes"])
        except ValidationError as exc:
            problems = [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]
            raise CommandError("; ".join(problems)) from exc
        credentials = {
            "client_id": created.client.client_id,
            "client_secret": created.client_secret,
            "token_url": f"{settings.PUBLIC_BASE_URL}/auth/token",
            "scopes": created.client.scopes,
        }
        self.stdout.write(json.dumps(credentials))
