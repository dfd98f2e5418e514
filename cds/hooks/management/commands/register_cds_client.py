"""``manage.py register_cds_client NAME --iss URL --jwks-url URL --organization ORG [--fhir-server URL ...]``."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from cds.core.services import organization_get_or_create
from cds.hooks.services import SERVICE_ID, cds_client_register
from cds.oauth.jwks import jwks_file_read


class Command(BaseCommand):
    help = (
        "Register a CDS client (an EHR) that calls our CDS Hooks services with JWTs signed by its own key "
        "(CDS Hooks 2.0, 'Trusting CDS Clients'), and print it as one JSON object with the aud its JWTs must "
        "carry. The client belongs to the organisation --organization (created when new) and its hook calls "
        "see only that organisation's patients. --fhir-server (repeatable) lists the FHIR bases we may read the "
        "Patient from when a call has no prefetch; any other fhirServer is refused."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="who the client is, e.g. 'St Mary's Epic'")
        parser.add_argument("--iss", required=True, help="the client's identifier: the iss of its JWTs")
        parser.add_argument("--jwks-url", default="", help="where the client publishes its public JWK Set")
        parser.add_argument(
            "--jwks", metavar="FILE", help="JSON file with the client's public JWK Set, for a client without a URL"
        )
        parser.add_argument("--organization", metavar="ORG", required=True, help="slug of the organisation (tenant)")
        parser.add_argument(
            "--fhir-server", metavar="URL", action="append", default=[], help="a FHIR base URL of the client"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        jwks = jwks_file_read(options["jwks"]) if options["jwks"] else None
        try:
            with transaction.atomic():  # a refused client leaves no new, empty organisation behind
                organization, organization_created = organization_get_or_create(slug=options["organization"])
                client = cds_client_register(
                    name=options["name"],
                    iss=options["iss"],
                    organization=organization,
                    jwks_url=options["jwks_url"],
                    jwks=jwks,
                    fhir_servers=options["fhir_server"],
                )
        except ValidationError as exc:
            problems = [f"{field}: {message}" for field, messages in exc.message_dict.items() for message in messages]
            raise CommandError("; ".join(problems)) from exc
        self.stdout.write(
            json.dumps(
                {
                    "name": client.name,
                    "iss": client.iss,
                    "jwks_url": client.jwks_url,
                    "organization": organization.slug,
                    "organization_created": organization_created,
                    "fhir_servers": client.fhir_servers,
                    "aud": f"{settings.PUBLIC_BASE_URL}/cds-services/{SERVICE_ID}",
                }
            )
        )
