"""SMART on FHIR system scopes: parse them, decide what they allow, and enforce them in FHIR views.

We accept both spellings an EHR may be configured with:

- SMART v2: ``system/<Type|*>.<cruds>``, the letters a subset of ``c r u d s`` in that order
  (``system/Observation.cr``, ``system/*.cruds``);
- SMART v1: ``system/<Type|*>.<read|write|*>``, where ``read`` is ``r s`` and ``write`` is ``c u d``.

Only the ``system/`` context means anything to a client-credentials client (there is no user or
patient in context), and v2 granular scopes (``system/Observation.rs?category=...``) are refused at
grant time: we could not enforce their query, and a scope we cannot enforce must not widen access.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import ValidationError

from cds.core.exceptions import FhirError

ACTIONS = "cruds"
_V1_ACTIONS = {"read": frozenset("rs"), "write": frozenset("cud"), "*": frozenset(ACTIONS)}
# Resource types are FHIR names (an upper-case letter then letters); "*" is every type.
_SCOPE = re.compile(r"^system/(?P<resource>\*|[A-Z][A-Za-z]{0,63})\.(?P<actions>[a-z*]+)$")
_V2_ACTIONS = re.compile(r"^c?r?u?d?s?$")


@dataclass(frozen=True)
class Scope:
    """One parsed scope: a resource type (or ``*``) and the actions it allows."""

    resource_type: str
    actions: frozenset[str]

    def covers(self, resource_type: str, action: str) -> bool:
        """Return whether this scope allows ``action`` on ``resource_type``."""
        return self.resource_type in {"*", resource_type} and action in self.actions


def scope_parse(scope: str) -> Scope | None:
    """Return the parsed scope, or None when it is malformed or not a ``system/`` resource scope."""
    match = _SCOPE.match(scope)
    if match is None:
        return None
    raw_actions = match["actions"]
    if raw_actions in _V1_ACTIONS:
        actions = _V1_ACTIONS[raw_actions]
    elif _V2_ACTIONS.match(raw_actions):
        actions = frozenset(raw_actions)
    else:
        return None
    return Scope(resource_type=match["resource"], actions=actions)


def scopes_split(text: str) -> list[str]:
    """Return the distinct scopes of a space-separated scope string, in their first order."""
    return list(dict.fromkeys(text.split()))


def scopes_validate(text: str) -> None:
    """Raise ``ValidationError`` unless ``text`` is a non-empty list of scopes we can enforce.

    Used as the model field validator, so the admin and ``full_clean`` refuse the same scopes the
    management command does.
    """
    scopes = scopes_split(text)
    if not scopes:
        raise ValidationError("at least one scope is required, e.g. system/Observation.crs")
    bad = [s for s in scopes if scope_parse(s) is None]
    if bad:
        raise ValidationError(
            "unsupported scope(s): %(bad)s; use system/<Type|*>.<cruds> (SMART v2) or .read/.write/.* (v1)",
            params={"bad": ", ".join(bad)},
        )


def scope_allows(granted: frozenset[str], resource_type: str, action: str) -> bool:
    """Return whether any of the ``granted`` scopes allows ``action`` on ``resource_type``.

    ``action`` is one of ``c r u d s``; anything else raises ``ValueError`` (a programming error in
    the calling view, not a client mistake). Malformed granted scopes allow nothing.
    """
    if len(action) != 1 or action not in ACTIONS:
        raise ValueError(f"action must be one of {ACTIONS!r}, got {action!r}")
    parsed = (scope_parse(s) for s in granted)
    return any(p is not None and p.covers(resource_type, action) for p in parsed)


def scope_within(requested: str, granted: frozenset[str]) -> bool:
    """Return whether ``granted`` allows everything ``requested`` would.

    A wildcard request (``system/*.rs``) is covered only by wildcard grants: a grant on named types
    cannot stand in for types that do not exist yet.
    """
    parsed = scope_parse(requested)
    if parsed is None:
        return False
    return all(scope_allows(granted, parsed.resource_type, action) for action in parsed.actions)


def require_conditional_scope(request: Any, resource_type: str, expression: str = "If-None-Exist") -> None:
    """Refuse a conditional create (403) unless the token may also read and search ``resource_type``.

    A conditional create answers with the matching resource (or, in a Bundle, its id): it is a
    search and a read. A create-only client gets 403 before anything is matched, as HAPI FHIR does
    since CVE-2026-113876; the CapabilityStatement says so.
    """
    granted: frozenset[str] = getattr(getattr(request, "user", None), "scopes", frozenset())
    if not (scope_allows(granted, resource_type, "r") and scope_allows(granted, resource_type, "s")):
        raise FhirError.single(
            403,
            "forbidden",
            f"conditional create (If-None-Exist) on {resource_type} needs read and search scope: it returns the match",
            expression,
        )


def scope_allows_read(request: Any, resource_type: str) -> bool:
    """Return whether the request's token may read ``resource_type``."""
    granted: frozenset[str] = getattr(getattr(request, "user", None), "scopes", frozenset())
    return scope_allows(granted, resource_type, "r")


def require_scope(request: Any, resource_type: str, action: str) -> None:
    """Refuse the request (403 OperationOutcome) unless its token allows ``action`` on ``resource_type``.

    ``request.user`` is the authenticated principal; a request without ``scopes`` (no principal)
    is refused too, so a view that forgot its authentication still fails closed.
    """
    granted: frozenset[str] = getattr(getattr(request, "user", None), "scopes", frozenset())
    if not scope_allows(granted, resource_type, action):
        raise FhirError.single(403, "forbidden", f"scope does not allow {action} on {resource_type}")
