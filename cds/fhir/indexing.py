"""Extract the search parameters we support from a resource's JSON.

Each returned dict becomes one ``SearchIndexEntry``. Adding a parameter means adding it here and
to the CapabilityStatement (``cds.fhir.capability.SEARCH_PARAMS``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from cds.fhir.dates import date_range


def _tokens(name: str, codings: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for coding in codings or []:
        if coding.get("code"):
            yield {"name": name, "system": coding.get("system", ""), "value": str(coding["code"])}


def _identifiers(identifiers: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for identifier in identifiers or []:
        if identifier.get("value"):
            yield {"name": "identifier", "system": identifier.get("system", ""), "value": identifier["value"]}


def _date(name: str, value: str | None) -> Iterator[dict[str, Any]]:
    if value:
        start, end = date_range(value)
        yield {"name": name, "date_start": start, "date_end": end}


def search_entries(resource_type: str, content: dict[str, Any]) -> list[dict[str, Any]]:
    """Return the index rows (name, system, value, date range) for a resource."""
    entries: list[dict[str, Any]] = [{"name": "_id", "value": content["id"]}]
    entries += _identifiers(content.get("identifier"))
    if resource_type == "Patient":
        if content.get("gender"):
            entries.append({"name": "gender", "value": content["gender"]})
        entries += _date("birthdate", content.get("birthDate"))
    elif resource_type == "Observation":
        entries += _tokens("code", (content.get("code") or {}).get("coding"))
        subject = (content.get("subject") or {}).get("reference")
        if subject:
            entries.append({"name": "subject", "value": subject})
            if subject.startswith("Patient/"):
                entries.append({"name": "patient", "value": subject})
        entries += _date(
            "date", content.get("effectiveDateTime") or (content.get("effectivePeriod") or {}).get("start")
        )
        for derived in content.get("derivedFrom") or []:
            if derived.get("reference"):
                entries.append({"name": "derived-from", "value": derived["reference"]})
    return entries
