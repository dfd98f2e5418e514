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
        # Streamed entry by entry: an audit trail can outgrow memory.
        count = 0
        with Path(options["out"]).open("w", encoding="utf-8") as handle:
            handle.write('{"resourceType": "Bundle", "type": "collection"')
            for event in audit_bundle(audit_entries(since=since)):
                entry = {"fullUrl": f"urn:ecg-cds:AuditEvent/{event['id']}", "resource": event}
                # FHIR JSON has no empty arrays: "entry" opens with the first event.
                handle.write((",\n" if count else ', "entry": [\n') + json.dumps(entry))
                count += 1
            handle.write("]}\n" if count else "}\n")
        self.stdout.write(f"wrote {count} AuditEvents to {options['out']}")
