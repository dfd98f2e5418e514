"""Read FHIR resources: read, vread and search."""

from __future__ import annotations

import re
from typing import Any

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery

from cds.core.exceptions import FhirError, FhirIssue
from cds.fhir.dates import date_range
from cds.fhir.models import SearchIndexEntry, StoredResource
from cds.fhir.paging import SearchPage, keyset_page
from cds.fhir.searchparams import SORT_PARAMS, Criterion, SearchProblem, search_parse

_REFERENCE_TARGET = {"patient": "Patient", "subject": "Patient", "focus": "DiagnosticReport"}
_DATE_PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def resource_read(
    *, resource_type: str, logical_id: str, organization_id: int, version_id: int | None = None
) -> StoredResource:
    """Return the current (or the given) version of a resource; FhirError 404 when absent.

    Another organisation's resource is absent too: the answer is the same 404, so ids do not leak.
    """
    queryset = StoredResource.objects.filter(
        resource_type=resource_type, logical_id=logical_id, organization_id=organization_id
    )
    queryset = queryset.filter(version_id=version_id) if version_id is not None else queryset.filter(is_current=True)
    resource = queryset.first()
    if resource is None:
        suffix = f"/_history/{version_id}" if version_id is not None else ""
        raise FhirError.single(404, "not-found", f"{resource_type}/{logical_id}{suffix} is not known")
    return resource


def _entries(resource_type: str, name: str) -> QuerySet[SearchIndexEntry]:
    return SearchIndexEntry.objects.filter(resource_type=resource_type, name=name)


def _token_filter(resource_type: str, name: str, raw: str) -> QuerySet[SearchIndexEntry]:
    """Match ``code``, ``system|code``, ``|code`` (no system) or ``system|`` (any code)."""
    query = _entries(resource_type, name)
    alternatives = SearchIndexEntry.objects.none()
    for value in raw.split(","):
        if "|" in value:
            system, code = value.split("|", 1)
            part = query.filter(system=system)
            if code:
                part = part.filter(value=code)
        else:
            part = query.filter(value=value)
        alternatives = alternatives | part
    return alternatives


def _reference_filter(resource_type: str, name: str, raw: str) -> QuerySet[SearchIndexEntry]:
    base = settings.PUBLIC_BASE_URL + "/fhir/"
    values = []
    for value in raw.split(","):
        value = value.removeprefix(base)
        if "/" not in value:
            value = f"{_REFERENCE_TARGET.get(name, 'Observation')}/{value}"
        values.append(value)
    return _entries(resource_type, name).filter(value__in=values)


def _date_filter(resource_type: str, name: str, raw: str) -> QuerySet[SearchIndexEntry]:
    prefix, value = ("eq", raw)
    if raw[:2] in _DATE_PREFIXES and not raw[:2].isdigit():
        prefix, value = raw[:2], raw[2:]
    start, end = date_range(value, expression=name)
    query = _entries(resource_type, name)
    lookups = {
        "eq": {"date_start__gte": start, "date_end__lte": end},
        "gt": {"date_end__gt": end},
        "sa": {"date_start__gte": end},
        "lt": {"date_start__lt": start},
        "eb": {"date_end__lte": start},
        "ge": {"date_end__gt": start},
        "le": {"date_start__lt": end},
    }
    if prefix not in lookups:
        raise FhirError.single(400, "not-supported", f"date prefix {prefix!r} is not supported", name)
    return query.filter(**lookups[prefix])


def _string_filter(resource_type: str, name: str, modifier: str, raw: str) -> QuerySet[SearchIndexEntry]:
    """Strings match case-insensitively at the start; ``:exact`` whole and case-sensitive; ``:contains`` anywhere."""
    lookup = {"exact": "value", "contains": "value__icontains"}.get(modifier, "value__istartswith")
    alternatives = SearchIndexEntry.objects.none()
    for value in raw.split(","):
        alternatives = alternatives | _entries(resource_type, name).filter(**{lookup: value})
    return alternatives


def _text_filter(resource_type: str, name: str, raw: str) -> QuerySet[SearchIndexEntry]:
    """Token ``:text``: any indexed display or text containing the words given (case-insensitive)."""
    alternatives = SearchIndexEntry.objects.none()
    for value in raw.split(","):
        alternatives = alternatives | _entries(resource_type, f"{name}:text").filter(value__icontains=value.lower())
    return alternatives


def _criterion_matches(resource_type: str, criterion: Criterion) -> QuerySet[SearchIndexEntry]:
    name, modifier, raw = criterion.name, criterion.modifier, criterion.raw
    if criterion.kind == "token":
        return _text_filter(resource_type, name, raw) if modifier == "text" else _token_filter(resource_type, name, raw)
    if criterion.kind == "reference":
        if modifier:  # a type modifier: subject:Patient=123 means subject=Patient/123
            raw = ",".join(v if "/" in v else f"{modifier}/{v}" for v in raw.split(","))
        return _reference_filter(resource_type, name, raw)
    if criterion.kind == "date":
        return _date_filter(resource_type, name, raw)
    return _string_filter(resource_type, name, modifier, raw)


def search_problems_raise(problems: list[SearchProblem]) -> None:
    """Refuse a query with unsupported parts (strict handling): 400 naming each."""
    if problems:
        raise FhirError(
            400,
            [FhirIssue(code="not-supported", diagnostics=p.message, expression=(p.parameter,)) for p in problems],
        )


def resource_search_queryset(
    *, resource_type: str, params: list[tuple[str, str]], organization_id: int, strict: bool = True
) -> QuerySet[StoredResource]:
    """Return current resources of ``organization_id`` matching every parameter (AND across, OR within commas).

    Unsupported parameters, modifiers and chains raise FhirError (400) when ``strict`` (the default,
    and always for conditional creates); under ``Prefer: handling=lenient`` they are skipped and
    the caller reports them (``search_parse(...).problems``).
    """
    parsed = search_parse(resource_type, params)
    if strict:
        search_problems_raise(parsed.problems)
    queryset = StoredResource.objects.filter(
        resource_type=resource_type, is_current=True, organization_id=organization_id
    )
    for criterion in parsed.criteria:
        if criterion.modifier == "missing":
            having = _entries(resource_type, criterion.name).values("resource_id")
            queryset = queryset.exclude(pk__in=having) if criterion.raw == "true" else queryset.filter(pk__in=having)
            continue
        matches = _criterion_matches(resource_type, criterion).values("resource_id")
        # :not is "no value matches", so resources without the element are included, as FHIR says.
        queryset = queryset.exclude(pk__in=matches) if criterion.modifier == "not" else queryset.filter(pk__in=matches)
    return queryset


# Bounds on paging values: an OFFSET beyond PostgreSQL's bigint is a DataError (a 500), and one in
# the millions is a full scan per page; the cursor-free paging here is not meant for that.
MAX_SEARCH_OFFSET = 1_000_000
_ASCII_DIGITS = re.compile(r"^[0-9]+$")


def _int_param(params: dict[str, str], name: str, default: int, maximum: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    # ASCII digits only: str.isdigit() accepts "²", which int() then refuses.
    if not _ASCII_DIGITS.match(raw):
        raise FhirError.single(400, "value", f"{name}={raw[:40]!r} must be a non-negative integer", name)
    # Compare lengths first: int() of a 5,000-digit string raises (Python's int-conversion limit).
    value = int(raw) if len(raw) <= len(str(maximum)) else maximum + 1
    if value > maximum:
        raise FhirError.single(400, "too-costly", f"{name}={raw[:40]} exceeds the maximum of {maximum}", name)
    return value


def _sort_ordering(
    resource_type: str, sort: str, queryset: QuerySet[StoredResource]
) -> tuple[QuerySet[StoredResource], list[Any]]:
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_PARAMS.get(resource_type, set()):
        raise FhirError.single(400, "not-supported", f"_sort={sort!r} is not supported on {resource_type}", "_sort")
    if key == "_lastUpdated":
        return queryset, (["-last_updated", "-pk"] if descending else ["last_updated", "pk"])
    # Sort on the indexed date; a subquery keeps resources without the date (sorted last).
    dates = _entries(resource_type, key).filter(resource_id=OuterRef("pk")).values("date_start")[:1]
    queryset = queryset.annotate(sort_date=Subquery(dates))
    date = F("sort_date")
    return queryset, ([date.desc(nulls_last=True), "-pk"] if descending else [date.asc(nulls_last=True), "pk"])


def resource_search(
    *, resource_type: str, params: list[tuple[str, str]], organization_id: int, strict: bool = True
) -> SearchPage:
    """Return one page of a search, sorted by ``_sort`` (default: most recently updated first).

    Sorted by ``_lastUpdated`` (the default), pages are keyset pages (``_cursor``): a page holds
    the resources after (or before) the last one seen, so ECGs arriving meanwhile neither shift
    nor repeat entries. Other sorts page by ``_offset``.
    """
    single = dict(params)
    # _count above the page size is clamped (the FHIR default behaviour); _offset above its bound is refused.
    count = min(_int_param(single, "_count", settings.FHIR_DEFAULT_PAGE_SIZE, 10**9), settings.FHIR_MAX_PAGE_SIZE)
    if single.get("_summary") == "count":
        count = 0
    offset = _int_param(single, "_offset", 0, MAX_SEARCH_OFFSET)
    queryset = resource_search_queryset(
        resource_type=resource_type, params=params, organization_id=organization_id, strict=strict
    )
    sort = single.get("_sort", "-_lastUpdated")
    queryset, ordering = _sort_ordering(resource_type, sort, queryset)
    total = queryset.count()
    if sort.lstrip("-") == "_lastUpdated" and "_offset" not in single:
        return keyset_page(
            queryset, descending=sort.startswith("-"), cursor=single.get("_cursor"), count=count, total=total
        )
    if "_cursor" in single:
        raise FhirError.single(400, "invalid", "_cursor pages only searches sorted by _lastUpdated", "_cursor")
    resources = list(queryset.order_by(*ordering)[offset : offset + count]) if count else []
    return SearchPage(
        resources=resources,
        total=total,
        count=count,
        offset=offset,
        has_next=offset + count < total and count > 0,
        has_previous=offset > 0,
    )
