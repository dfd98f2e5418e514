"""Rewrite references inside FHIR resources (shared by Bundle processing and result storage)."""

from __future__ import annotations

from typing import Any


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
