"""Keyset paging of searches: stable while resources arrive, unlike OFFSET.

A cursor names the last (``a``: after) or first (``b``: before) resource of the page a link leaves
from, as ``<direction><lastUpdated in µs>.<pk>``; the next page is the ``count`` resources beyond
it in the sort order. New resources sort first (newest first) or beyond the end, so a client
walking the pages sees each match once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db.models import Q, QuerySet

from cds.core.exceptions import FhirError
from cds.fhir.models import StoredResource

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CURSOR = re.compile(r"^([ab])([0-9]{1,17})\.([0-9]{1,18})$")


@dataclass(frozen=True)
class SearchPage:
    """One page of search results; ``next_cursor``/``previous_cursor`` are set for keyset pages."""

    resources: list[StoredResource]
    total: int
    count: int
    offset: int = 0
    has_next: bool = False
    has_previous: bool = False
    next_cursor: str | None = None
    previous_cursor: str | None = None
    keyset: bool = False


def cursor_of(direction: str, resource: StoredResource) -> str:
    """Return the cursor for paging ``a``fter or ``b``efore ``resource``."""
    micros = (resource.last_updated - _EPOCH) // timedelta(microseconds=1)  # exact, unlike float seconds
    return f"{direction}{micros}.{resource.pk}"


def _parse(cursor: str) -> tuple[str, datetime, int]:
    match = _CURSOR.match(cursor)
    if match is None:
        raise FhirError.single(400, "invalid", f"_cursor={cursor[:40]!r} is not a cursor this server issued", "_cursor")
    direction, micros, pk = match.groups()
    return direction, _EPOCH + timedelta(microseconds=int(micros)), int(pk)


def _beyond(when: datetime, pk: int, *, greater: bool) -> Q:
    if greater:
        return Q(last_updated__gt=when) | Q(last_updated=when, pk__gt=pk)
    return Q(last_updated__lt=when) | Q(last_updated=when, pk__lt=pk)


def keyset_page(
    queryset: QuerySet[StoredResource], *, descending: bool, cursor: str | None, count: int, total: int
) -> SearchPage:
    """Return the page of ``queryset`` (ordered by lastUpdated then pk) that ``cursor`` points to."""
    forward = ["-last_updated", "-pk"] if descending else ["last_updated", "pk"]
    backward = ["last_updated", "pk"] if descending else ["-last_updated", "-pk"]
    if count == 0:
        return SearchPage(resources=[], total=total, count=0, keyset=True)
    if cursor is None:
        rows = list(queryset.order_by(*forward)[: count + 1])
        has_more_forward, has_more_backward = len(rows) > count, False
        rows = rows[:count]
    else:
        direction, when, pk = _parse(cursor)
        # "After" in a descending sort means older: smaller (lastUpdated, pk).
        after = _beyond(when, pk, greater=not descending)
        before = _beyond(when, pk, greater=descending)
        if direction == "a":
            rows = list(queryset.filter(after).order_by(*forward)[: count + 1])
            # The page left from (the cursor's resource, or any before it) is the previous page.
            has_more_backward = queryset.filter(before | Q(last_updated=when, pk=pk)).exists()
            has_more_forward = len(rows) > count
        else:
            rows = list(queryset.filter(before).order_by(*backward)[: count + 1])
            has_more_backward, has_more_forward = len(rows) > count, True
            rows = rows[:count][::-1]
        rows = rows[:count]
    return SearchPage(
        resources=rows,
        total=total,
        count=count,
        has_next=has_more_forward and bool(rows),
        has_previous=has_more_backward and bool(rows),
        next_cursor=cursor_of("a", rows[-1]) if has_more_forward and rows else None,
        previous_cursor=cursor_of("b", rows[0]) if has_more_backward and rows else None,
        keyset=True,
    )
