"""``_include`` and ``_revinclude``: the resources a page's matches point to, or that point to them.

Both follow the search index (the same rows the reference parameters search), and both are
filtered on the caller's organisation like every other query: a reference to another tenant's
resource is never followed.
"""

from __future__ import annotations

from django.conf import settings
from django.db.models import Q

from cds.fhir.models import SearchIndexEntry, StoredResource


def _relative(reference: str) -> str:
    return reference.removeprefix(settings.PUBLIC_BASE_URL + "/fhir/")


def _by_references(references: set[str], organization_id: int, target_type: str | None) -> list[StoredResource]:
    wanted = Q(pk__in=[])
    for reference in references:
        resource_type, _, logical_id = reference.partition("/")
        if logical_id and "/" not in logical_id and (target_type is None or resource_type == target_type):
            wanted |= Q(resource_type=resource_type, logical_id=logical_id)
    return list(StoredResource.objects.filter(wanted, is_current=True, organization_id=organization_id))


def included_resources(
    *, matches: list[StoredResource], includes: list[str], revincludes: list[str], organization_id: int
) -> list[StoredResource]:
    """Return the resources named by ``_include``/``_revinclude`` values (already validated), without repeats."""
    found: dict[int, StoredResource] = {}
    pks = [m.pk for m in matches]
    for value in includes:
        _, param, *target = value.split(":")
        references = SearchIndexEntry.objects.filter(resource_id__in=pks, name=param).values_list("value", flat=True)
        for resource in _by_references(
            {_relative(r) for r in references}, organization_id, target[0] if target else None
        ):
            found.setdefault(resource.pk, resource)
    if revincludes and matches:
        relative = [m.reference for m in matches]
        absolute = [f"{settings.PUBLIC_BASE_URL}/fhir/{r}" for r in relative]
        for value in revincludes:
            source, param, *target = value.split(":")
            if target and not any(m.resource_type == target[0] for m in matches):
                continue
            pointing = SearchIndexEntry.objects.filter(
                resource_type=source, name=param, value__in=relative + absolute
            ).values("resource_id")
            rows = StoredResource.objects.filter(pk__in=pointing, is_current=True, organization_id=organization_id)
            for resource in rows:
                found.setdefault(resource.pk, resource)
    match_pks = set(pks)
    return [r for pk, r in found.items() if pk not in match_pks]
