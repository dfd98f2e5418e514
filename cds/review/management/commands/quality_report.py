"""Print the quality report of the served verdict: per model version, overall and by age band, sex, site
and sampling rate (AUROC, sensitivity, specificity, PPV with 95% bootstrap intervals on signed verdicts),
calibration per site and drift alarms. docs/quality.md says what each figure means."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.feedback import feedback_summary
from cds.review.quality import quality_report, report_csv


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", help="ISO date: only verdicts served from then on (UTC)")
        parser.add_argument("--model-version", help="only this version of the served verdict")
        parser.add_argument("--json", action="store_true", help="print JSON (default: CSV of the figures)")
        parser.add_argument("--resamples", type=int, default=None, help="bootstrap resamples (default 1000)")

    def handle(self, *args: Any, **options: Any) -> None:
        since = None
        if options["since"]:
            try:
                since = datetime.fromisoformat(options["since"]).replace(tzinfo=UTC)
            except ValueError as exc:
                raise CommandError(f"--since {options['since']!r} is not an ISO date (YYYY-MM-DD)") from exc
        report = quality_report(since=since, model_version=options["model_version"], resamples=options["resamples"])
        if options["json"]:
            # CDS Hooks feedback (issue 15): accepted/overridden cards per model version and site.
            report["feedback"] = feedback_summary(since=since, model_version=options["model_version"])
            self.stdout.write(json.dumps(report, indent=2))
        else:
            self.stdout.write(report_csv(report))
