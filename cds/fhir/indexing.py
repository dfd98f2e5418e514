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


def _token_text(name: str, concept: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    """Index a CodeableConcept's text and displays (lower-cased) for the token ``:text`` modifier."""
    concept = concept or {}
    texts = [concept.get("text")] + [c.get("display") for c in concept.get("coding") or []]
    for text in {t.strip().lower()[:255] for t in texts if isinstance(t, str) and t.strip()}:
        yield {"name": f"{name}:text", "value": text}


def _strings(name: str, values: list[Any]) -> Iterator[dict[str, Any]]:
    for value in values:
        if isinstance(value, str) and value.strip():
            yield {"name": name, "value": value.strip()[:255]}


def _human_names(names: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for human in names or []:
        family, given = human.get("family"), human.get("given") or []
        yield from _strings("family", [family])
        yield from _strings("given", given)
        yield from _strings("name", [family, *given, human.get("text")])


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
        entries += _human_names(content.get("name"))
    elif resource_type == "Observation":
        entries += _tokens("code", (content.get("code") or {}).get("coding"))
        entries += _token_text("code", content.get("code"))
        entries += _subject_entries(content.get("subject"))
        entries += _date(
            "date", content.get("effectiveDateTime") or (content.get("effectivePeriod") or {}).get("start")
        )
        entries += _references("derived-from", content.get("derivedFrom"))
    elif resource_type == "DiagnosticReport":
        entries += _subject_entries(content.get("subject"))
        entries += _references("result", content.get("result"))
        entries += _tokens("code", (content.get("code") or {}).get("coding"))
        entries += _token_text("code", content.get("code"))
        entries.append({"name": "status", "value": content.get("status", "")})
    elif resource_type == "Task":
        entries += _subject_entries(content.get("for"))
        entries += _references("focus", [content["focus"]] if content.get("focus") else [])
        entries += _tokens("code", (content.get("code") or {}).get("coding"))
        entries += _token_text("code", content.get("code"))
        entries.append({"name": "status", "value": content.get("status", "")})
    elif resource_type == "DocumentReference":
        entries += _subject_entries(content.get("subject"))
    elif resource_type == "Device":
        entries += _strings("device-name", [n.get("name") for n in content.get("deviceName") or []])
    elif resource_type == "Provenance":
        entries += _references("target", content.get("target"))
    return entries


def _references(name: str, references: list[dict[str, Any]] | None) -> Iterator[dict[str, Any]]:
    for reference in references or []:
        if reference.get("reference"):
            yield {"name": name, "value": reference["reference"]}


def _subject_entries(subject: dict[str, Any] | None) -> Iterator[dict[str, Any]]:
    reference = (subject or {}).get("reference")
    if reference:
        yield {"name": "subject", "value": reference}
        if reference.startswith("Patient/"):
            yield {"name": "patient", "value": reference}
