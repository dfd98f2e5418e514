"""Periodic quality work (issue 19): the daily drift check, run by Celery beat on the maintenance queue."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from celery import shared_task

from cds.review.drift import check_drift


@shared_task(name="quality.check_drift")  # type: ignore[misc]
def quality_check_drift(day: str | None = None) -> dict[str, object]:
    """Check ``day`` (ISO date; default yesterday, UTC) for drift at every site; return the new alarms."""
    checked = date.fromisoformat(day) if day else datetime.now(UTC).date() - timedelta(days=1)
    alarms = check_drift(day=checked)
    return {"day": checked.isoformat(), "alarms": [f"{a.site} {a.feature}" for a in alarms]}
