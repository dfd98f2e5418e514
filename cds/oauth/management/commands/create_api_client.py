"""``manage.py create_api_client NAME --organization ORG [--scopes ...] [--jwks FILE]``: create a client, print it once."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from cds.core.services import organization_get_or_create
from cds.oauth.jwks import jwks_file_read
from cds.oauth.services import api_client_create

# What an EHR integration engine needs to send ECGs and read them back: create, read and search
# Patients and Observations. Transaction/batch Bundles need no scope of their own: each entry is
# checked against its resource type. No update/delete: the API does not offer them.
DEFAULT_SCOPES = "system/Patient.crs system/Observation.crs"


class Command(BaseCommand):
    help = (
        "Create an API client for the OAuth2 client-credentials grant and print, as one JSON object, "
        "its client_id, client_secret, token_url, scopes, auth_method and organization. The client belongs to "
        "the organisation --organization (created when new: organization_created is then true) and sees only "
        "its data. With --jwks the client "
        "authenticates with private_key_jwt (SMART Backend Services) and client_secret is null; without, "
        "the secret is stored hashed and shown only now. "
        f"Default scopes: {DEFAULT_SCOPES!r} (create, read and search Patients and Observations)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who the client is, e.g. 'Epic integration engine'")
        parser.add_argument(
            "--organization",
            metavar="ORG",
            required=True,
            help="slug of the organisation (tenant) the client belongs to, e.g. st-marys; created when new",
        )
        parser.add_argument(
            "--scopes",
            default=DEFAULT_SCOPES,
            help=(
                "space-separated SMART system scopes, v2 (system/Observation.crs, system/*.rs) "
                f"or v1 (system/Patient.read, system/*.write); default {DEFAULT_SCOPES!r}"
            ),
        )

        parser.add_argument(
            "--jwks",
            metavar="FILE",
            help=(
                'JSON file with the client\'s public JWK Set ({"keys": [...]}, RS384 or ES384 keys, each '
                "with a kid): the client then authenticates with signed JWT assertions, not a secret"
            ),
        )

    def handle(self, *args: Any, **options: Any) -> None:
        jwks = jwks_file_read(options["jwks"]) if options["jwks"] else None
        try:
            # One transaction: a refused client leaves no new, empty organisation behind.
            with transaction.atomic():
                organization, organization_created = organization_get_or_create(slug=options["organization"])
                created = api_client_create(
                    name=options["name"], scopes=options["scopes"], organization=organization, jwks=jwks
                )
        except ValidationError as exc:
            problems = [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]
            raise CommandError("; ".join(problems)) from exc
        credentials = {
            "client_id": created.client.client_id,
            "client_secret": created.client_secret,
            "token_url": f"{settings.PUBLIC_BASE_URL}/auth/token",
            "scopes": created.client.scopes,
            "auth_method": created.client.auth_method,
            "organization": organization.slug,
            "organization_created": organization_created,
        }
        self.stdout.write(json.dumps(credentials))
