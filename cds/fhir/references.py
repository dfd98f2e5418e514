"""Rewrite references inside FHIR resources (shared by Bundle processing and result storage)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from django.conf import settings

from cds.fhir.models import StoredResource


def rewrite_references(node: Any, mapping: dict[str, str]) -> None:
    """Replace ``urn:uuid`` references (and other fullUrls) with the server's ``Type/id``."""
    if isinstance(node, dict):
        reference = node.get("reference")
        if isinstance(reference, str) and reference in mapping:
            node["reference"] = mapping[reference]
        for value in node.values():
            if isinstance(value, (dict, list)):
                rewrite_references(value, mapping)
    elif isinstance(node, list):
        for item in node:
            rewrite_references(item, mapping)


def identifier_search(identifier: dict[str, Any]) -> str:
    """Return the ``identifier=system|value`` search (ifNoneExist, conditional URLs) for an Identifier.

    The token is percent-encoded: it is a URL query, and a '+' (as in a Device's version string)
    would read as a space on the server, match nothing, and a replay would create a duplicate.
    """
    return "identifier=" + quote(f"{identifier['system']}|{identifier['value']}", safe=":|/")


def ehr_reference(stored: StoredResource) -> dict[str, Any]:
    """Return a reference the EHR resolves by business identifier, with our absolute URL beside it.

    The EHR does not know our ids: it matches ``identifier`` (when the resource has one); the URL
    lets a reader find our copy.
    """
    reference: dict[str, Any] = {
        "reference": f"{settings.PUBLIC_BASE_URL}/fhir/{stored.resource_type}/{stored.logical_id}",
        "type": stored.resource_type,
    }
    identifiers = stored.content.get("identifier") or []
    if identifiers:
        reference["identifier"] = identifiers[0]
    return reference
