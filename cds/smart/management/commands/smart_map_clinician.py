"""Map an EHR clinician (fhirUser) to an existing user: ``manage.py smart_map_clinician ISS FHIR_USER USERNAME``."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ObjectDoesNotExist
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.smart.services import clinician_map


class Command(BaseCommand):
    help = "Map an EHR clinician's fhirUser to an existing user; SMART launches never create accounts."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("iss", help="The registered EHR's FHIR base URL")
        parser.add_argument("fhir_user", help="The clinician's fhirUser (e.g. Practitioner/123 or its URL)")
        parser.add_argument("username", help="The existing user it maps to")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            mapping = clinician_map(iss=options["iss"], fhir_user=options["fhir_user"], username=options["username"])
        except ObjectDoesNotExist as exc:
            raise CommandError(f"unknown EHR or user: {exc}") from exc
        self.stdout.write(f"{mapping.fhir_user} → {mapping.user.get_username()} ({mapping.ehr.iss})")
