"""Read FHIR resources: read, vread and search."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db.models import F, OuterRef, QuerySet, Subquery

from cds.core.exceptions import FhirError
from cds.fhir.dates import date_range
from cds.fhir.models import SearchIndexEntry, StoredResource

TOKEN_PARAMS = {
    "Patient": {"_id", "identifier", "gender"},
    "Observation": {"_id", "identifier", "code"},
    "DiagnosticReport": {"_id", "identifier", "code", "status"},
    "Task": {"_id", "identifier", "code", "status"},
    "Device": {"_id", "identifier"},
    "Provenance": {"_id"},
    "DocumentReference": {"_id", "identifier"},
}
REFERENCE_PARAMS = {
    "Patient": set(),
    "Observation": {"subject", "patient", "derived-from"},
    "DiagnosticReport": {"subject", "patient", "result"},
    "Task": {"subject", "patient", "focus"},
    "Device": set(),
    "Provenance": {"target"},
    "DocumentReference": {"subject", "patient"},
}
DATE_PARAMS = {"Patient": {"birthdate"}, "Observation": {"date"}}
SORT_PARAMS = {t: {"_lastUpdated"} for t in TOKEN_PARAMS} | {
    "Patient": {"_lastUpdated", "birthdate"},
    "Observation": {"_lastUpdated", "date"},
}
RESULT_PARAMS = {"_count", "_sort", "_offset", "_format", "_total"}
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


def unsupported_params(resource_type: str, params: list[tuple[str, str]]) -> list[str]:
    """Return the names of parameters this server does not support for ``resource_type``."""
    known = TOKEN_PARAMS.get(resource_type, set()) | REFERENCE_PARAMS.get(resource_type, set())
    known |= DATE_PARAMS.get(resource_type, set()) | RESULT_PARAMS
    return [name for name, _ in params if name.split(":")[0] not in known]


def resource_search_queryset(
    *, resource_type: str, params: list[tuple[str, str]], organization_id: int, strict: bool = True
) -> QuerySet[StoredResource]:
    """Return current resources of ``organization_id`` matching every parameter (AND across, OR within commas).

    Unknown parameters raise FhirError (400) when ``strict`` (conditional creates, and searches sent
    with ``Prefer: handling=strict``); otherwise they are skipped, as FHIR's lenient default says,
    and the caller reports them.
    """
    queryset = StoredResource.objects.filter(
        resource_type=resource_type, is_current=True, organization_id=organization_id
    )
    unknown = set(unsupported_params(resource_type, params))
    for name, raw in params:
        if name in unknown and not strict:
            continue
        if name in RESULT_PARAMS:
            continue
        base_name = name.split(":")[0]
        if base_name in TOKEN_PARAMS.get(resource_type, set()):
            matches = _token_filter(resource_type, base_name, raw)
        elif base_name in REFERENCE_PARAMS.get(resource_type, set()):
            matches = _reference_filter(resource_type, base_name, raw)
        elif base_name in DATE_PARAMS.get(resource_type, set()):
            matches = _date_filter(resource_type, base_name, raw)
        else:
            raise FhirError.single(
                400, "not-supported", f"search parameter {name!r} is not supported on {resource_type}", name
            )
        queryset = queryset.filter(pk__in=matches.values("resource_id"))
    return queryset


@dataclass(frozen=True)
class SearchPage:
    """One page of search results."""

    resources: list[StoredResource]
    total: int
    offset: int
    count: int


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


def resource_search(
    *, resource_type: str, params: list[tuple[str, str]], organization_id: int, strict: bool = False
) -> SearchPage:
    """Return one page of a search, sorted by ``_sort`` (default: most recently updated first)."""
    single = dict(params)
    # _count above the page size is clamped (the FHIR default behaviour); _offset above its bound is refused.
    count = min(_int_param(single, "_count", settings.FHIR_DEFAULT_PAGE_SIZE, 10**9), settings.FHIR_MAX_PAGE_SIZE)
    offset = _int_param(single, "_offset", 0, MAX_SEARCH_OFFSET)
    queryset = resource_search_queryset(
        resource_type=resource_type, params=params, organization_id=organization_id, strict=strict
    )
    sort = single.get("_sort", "-_lastUpdated")
    descending = sort.startswith("-")
    key = sort.lstrip("-")
    if key not in SORT_PARAMS.get(resource_type, set()):
        raise FhirError.single(400, "not-supported", f"_sort={sort!r} is not supported on {resource_type}", "_sort")
    if key == "_lastUpdated":
        ordering: list[Any] = ["-last_updated", "-pk"] if descending else ["last_updated", "pk"]
    else:
        # Sort on the indexed date; a subquery keeps resources without the date (sorted last).
        dates = _entries(resource_type, key).filter(resource_id=OuterRef("pk")).values("date_start")[:1]
        queryset = queryset.annotate(sort_date=Subquery(dates))
        date = F("sort_date")
        ordering = [date.desc(nulls_last=True), "-pk"] if descending else [date.asc(nulls_last=True), "pk"]
    total = queryset.count()
    resources = list(queryset.order_by(*ordering)[offset : offset + count])
    return SearchPage(resources=resources, total=total, offset=offset, count=count)
