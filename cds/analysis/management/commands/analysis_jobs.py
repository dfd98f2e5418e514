"""List analysis jobs (newest first) with their ECG and status."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cds.analysis.models import AnalysisJob


class Command(BaseCommand):
    help = "List analysis jobs with their ECG Observation id, status and error."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON array")
        parser.add_argument("--limit", type=int, default=100)

    def handle(self, *args: Any, **options: Any) -> None:
        jobs = AnalysisJob.objects.select_related("recording").order_by("-created_at")[: options["limit"]]
        rows = [
            {
                "job": job.pk,
                "observation": job.recording.logical_id,
                "status": job.status,
                "attempts": job.attempts,
                "error": job.error,
            }
            for job in jobs
        ]
        if options["json"]:
            self.stdout.write(json.dumps(rows))
            return
        for row in rows:
            self.stdout.write(f"{row['job']:>6}  Observation/{row['observation']}  {row['status']:<10} {row['error']}")
