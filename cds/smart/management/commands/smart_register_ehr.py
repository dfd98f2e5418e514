"""Register an EHR for SMART launches of the review page: ``manage.py smart_register_ehr ISS CLIENT_ID ORG``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist, ValidationError
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.smart.services import ehr_register


class Command(BaseCommand):
    help = "Register (or update) an EHR allowed to launch the review page (SMART EHR launch)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("iss", help="The EHR's FHIR base URL, exactly as it sends iss")
        parser.add_argument("client_id", help="The client_id the EHR registered us under")
        parser.add_argument("organization", help="Slug of the organisation whose ECGs this EHR may open")
        parser.add_argument("--name", default="")
        parser.add_argument("--inactive", action="store_true", help="Register it switched off")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            ehr = ehr_register(
                iss=options["iss"],
                client_id=options["client_id"],
                organization_slug=options["organization"],
                name=options["name"],
                active=not options["inactive"],
            )
        except ObjectDoesNotExist as exc:
            raise CommandError(f"no organisation {options['organization']!r}") from exc
        except ValidationError as exc:
            raise CommandError(f"invalid EHR registration: {exc}") from exc
        self.stdout.write(f"EHR {ehr.iss} registered for {ehr.organization} (active: {ehr.is_active})")
