"""Build the searchset Bundle of a FHIR search: matches, includes, links and warnings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.conf import settings

from cds.fhir.includes import included_resources
from cds.fhir.models import StoredResource
from cds.fhir.paging import SearchPage
from cds.fhir.searchparams import search_parse
from cds.fhir.selectors import resource_search
from cds.fhir.shaping import shape_resource

_PAGING = {"_offset", "_cursor", "_count", "_format"}


@dataclass(frozen=True)
class Searchset:
    """The Bundle, and every stored resource it discloses (for the access audit)."""

    bundle: dict[str, Any]
    resources: list[StoredResource]


def _links(base: str, kept: list[tuple[str, str]], page: SearchPage, cursor: str | None) -> list[dict[str, str]]:
    def link(relation: str, *extra: tuple[str, str]) -> dict[str, str]:
        return {"relation": relation, "url": f"{base}?{urlencode([*kept, ('_count', str(page.count)), *extra])}"}

    if page.keyset:
        links = [link("self", *([("_cursor", cursor)] if cursor else [])), link("first")]
        if page.next_cursor:
            links.append(link("next", ("_cursor", page.next_cursor)))
        if page.previous_cursor:
            links.append(link("previous", ("_cursor", page.previous_cursor)))
        return links
    links = [link("self", ("_offset", str(page.offset))), link("first", ("_offset", "0"))]
    if page.has_next:
        links.append(link("next", ("_offset", str(page.offset + page.count))))
    if page.has_previous:
        links.append(link("previous", ("_offset", str(max(page.offset - page.count, 0)))))
    return links


def _entry(resource: StoredResource, mode: str, summary: str | None, elements: list[str] | None) -> dict[str, Any]:
    return {
        "fullUrl": f"{settings.PUBLIC_BASE_URL}/fhir/{resource.reference}",
        "resource": shape_resource(resource.content, summary=summary, elements=elements),
        "search": {"mode": mode},
    }


def searchset(
    *, resource_type: str, params: list[tuple[str, str]], organization_id: int, lenient: bool = False
) -> Searchset:
    """Run a search and return its Bundle; FhirError 400 for anything unsupported unless ``lenient``."""
    parsed = search_parse(resource_type, params)
    page = resource_search(
        resource_type=resource_type, params=params, organization_id=organization_id, strict=not lenient
    )
    problem_keys = {p.parameter for p in parsed.problems}
    # The links show the search as executed: ignored parameters are left out of them.
    kept = [(k, v) for k, v in params if k not in _PAGING and k not in problem_keys]
    result = dict(parsed.result)
    summary = result.get("_summary")
    elements = [e for e in result["_elements"].split(",") if e] if "_elements" in result else None
    extra = included_resources(
        matches=page.resources,
        includes=[v for k, v in parsed.result if k == "_include"],
        revincludes=[v for k, v in parsed.result if k == "_revinclude"],
        organization_id=organization_id,
    )
    entries = [_entry(r, "match", summary, elements) for r in page.resources]
    entries += [_entry(r, "include", summary, None) for r in extra]
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "type": "searchset",
        "total": page.total,
        "link": _links(f"{settings.PUBLIC_BASE_URL}/fhir/{resource_type}", kept, page, dict(params).get("_cursor")),
        "entry": entries,
    }
    if parsed.problems:
        issues = [
            {
                "severity": "warning",
                "code": "not-supported",
                "diagnostics": f"{p.message}; ignored",
                "expression": [p.parameter],
            }
            for p in parsed.problems
        ]
        bundle["entry"].append(
            {"resource": {"resourceType": "OperationOutcome", "issue": issues}, "search": {"mode": "outcome"}}
        )
    return Searchset(bundle=bundle, resources=[*page.resources, *extra])
