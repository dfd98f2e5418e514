"""Rewrite references inside FHIR resources (shared by Bundle processing and result storage)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


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
