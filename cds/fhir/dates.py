"""FHIR date, dateTime and partial dates as half-open UTC ranges ``[start, end)``."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from cds.core.exceptions import FhirError

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")


def fhir_instant(moment: datetime) -> str:
    """Return an aware datetime as a FHIR instant, UTC written ``Z`` (the form EHRs compare as text)."""
    return moment.isoformat().replace("+00:00", "Z")


def _add_months(moment: datetime, months: int) -> datetime:
    year, month = divmod(moment.month - 1 + months, 12)
    return moment.replace(year=moment.year + year, month=month + 1)


def date_range(value: str, *, expression: str = "") -> tuple[datetime, datetime]:
    """Return the UTC range a FHIR date/dateTime covers (a day, month or year for partial dates).

    A dateTime without a time zone is taken as UTC. Raises FhirError (400) for anything else.
    """
    match = _PARTIAL.match(value)
    try:
        if match:
            year, month, day = match.groups()
            start = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
            if day:
                return start, start + timedelta(days=1)
            if month:
                return start, _add_months(start, 1)
            return start, start.replace(year=start.year + 1)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        moment = moment.astimezone(UTC)
        return moment, moment + timedelta(seconds=1)
    except ValueError:
        raise FhirError.single(400, "value", f"{value!r} is not a FHIR date or dateTime", expression or None) from None
    except OverflowError:
        # 9999-12-31T23:59:59Z ends in year 10000, 0001-01-01T00:00+01:00 starts in year 0: Python has neither.
        raise FhirError.single(
            400, "value", f"{value!r} lies outside the years 0001-9999 this server handles", expression or None
        ) from None


def age_range_years(birth_date: str, at: datetime) -> tuple[float, float] | None:
    """Return (youngest, oldest) possible age in years at ``at`` for a possibly partial birthDate."""
    try:
        born_from, born_until = date_range(birth_date)
    except FhirError:
        return None
    year = 365.2425 * 86400
    youngest = (at - born_until).total_seconds() / year
    oldest = (at - born_from).total_seconds() / year
    return max(youngest, 0.0), max(oldest, 0.0)
