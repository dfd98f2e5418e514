"""Compare each site's inputs and scores on one day with its reference window; raise drift alarms.

Run once a day after midnight UTC (a CronJob, or Celery beat) for the day just ended."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from cds.review.drift import REFERENCE_DAYS, check_drift


class Command(BaseCommand):
    help = __doc__

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--day", help="ISO date to check (default: yesterday, UTC)")
        parser.add_argument("--reference-days", type=int, default=REFERENCE_DAYS)

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            day = date.fromisoformat(options["day"]) if options["day"] else datetime.now(UTC).date() - timedelta(days=1)
        except ValueError as exc:
            raise CommandError(f"--day {options['day']!r} is not an ISO date (YYYY-MM-DD)") from exc
        alarms = check_drift(day=day, reference_days=options["reference_days"])
        for alarm in alarms:
            self.stdout.write(
                f"ALARM {alarm.site} {alarm.day} {alarm.feature}: {alarm.test}={alarm.statistic:.3f} "
                f"(threshold {alarm.threshold}) reference {alarm.details.get('reference')} day {alarm.details.get('day')}"
            )
        self.stdout.write(f"{len(alarms)} new drift alarm(s) for {day}")
