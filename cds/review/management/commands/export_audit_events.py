"""Export the audit trail (who viewed or changed what, when) as a FHIR R4 Bundle of AuditEvents."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.review.audit import audit_bundle, audit_entries


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", required=True, help="file to write (a collection Bundle, JSON)")
        parser.add_argument("--since", help="ISO date: only entries from then on")

    def handle(self, *args: Any, **options: Any) -> None:
        since = datetime.fromisoformat(options["since"]).replace(tzinfo=UTC) if options["since"] else None
        events = list(audit_bundle(audit_entries(since=since)))
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "entry": [{"fullUrl": f"urn:ecg-cds:AuditEvent/{e['id']}", "resource": e} for e in events]}  # fmt: skip
        Path(options["out"]).write_text(json.dumps(bundle, indent=1))
        self.stdout.write(f"wrote {len(events)} AuditEvents to {options['out']}")
