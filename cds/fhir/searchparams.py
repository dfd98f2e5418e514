"""What ``/fhir`` searches understand: parameters, modifiers, includes; and the parsing of a query.

The tables here are the single source for both the search code and the CapabilityStatement, so
the statement lists exactly what works. Anything else in a query (an unknown parameter, modifier
or chain) is a ``SearchProblem``: a 400 by default, a warning under ``Prefer: handling=lenient``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
STRING_PARAMS = {"Patient": {"name", "family", "given"}, "Device": {"device-name"}}
SORT_PARAMS = {t: {"_lastUpdated"} for t in TOKEN_PARAMS} | {
    "Patient": {"_lastUpdated", "birthdate"},
    "Observation": {"_lastUpdated", "date"},
}
RESULT_PARAMS = {
    "_count",
    "_sort",
    "_offset",
    "_cursor",
    "_format",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    # Aidbox's total method, which fhirpy sends with every count(): the total here is always exact,
    # which satisfies each method it names, so it is accepted rather than refused.
    "_totalMethod",
}
MODIFIERS = {
    "token": {"missing", "not"},  # plus :text on TEXT_TOKEN_PARAMS
    "reference": {"missing"},  # plus the target type (subject:Patient), checked against REFERENCE_TARGETS
    "date": {"missing"},
    "string": {"missing", "exact", "contains"},
}
# The resource types a reference parameter points to (for the type modifier and for _include).
REFERENCE_TARGETS = {
    "subject": ("Patient",),
    "patient": ("Patient",),
    "derived-from": ("Observation", "DocumentReference"),  # an ECG converted from a document (issue 18)
    "result": ("Observation",),
    "focus": ("DiagnosticReport",),
    "target": ("Observation", "DiagnosticReport", "Device", "Task", "Patient"),
}
# The references clients follow with _include (source type, parameter); _revinclude uses the same
# pairs from the target's side.
INCLUDES = {
    ("DiagnosticReport", "result"),
    ("DiagnosticReport", "subject"),
    ("Observation", "derived-from"),
    ("Observation", "subject"),
    ("Task", "focus"),
    ("Provenance", "target"),
}
# Token parameters whose display text is indexed (``code:text=sinus``); others have no text to match.
TEXT_TOKEN_PARAMS = {"code"}
SUMMARY_VALUES = {"true", "false", "count", "data"}
_KINDS = (("token", TOKEN_PARAMS), ("reference", REFERENCE_PARAMS), ("date", DATE_PARAMS), ("string", STRING_PARAMS))


def param_kind(resource_type: str, name: str) -> str | None:
    """Return ``token``, ``reference``, ``date`` or ``string`` for a supported parameter, else None."""
    for kind, table in _KINDS:
        if name in table.get(resource_type, set()):
            return kind
    return None


def include_targets(resource_type: str) -> list[str]:
    """Return the ``_revinclude`` values (``Source:param``) that can point at ``resource_type``."""
    return sorted(f"{source}:{param}" for source, param in INCLUDES if resource_type in REFERENCE_TARGETS[param])


@dataclass(frozen=True)
class Criterion:
    """One supported filter: ``name[:modifier]=raw`` of a given kind."""

    name: str
    kind: str
    modifier: str
    raw: str


@dataclass(frozen=True)
class SearchProblem:
    """Something in a query this server does not do; ``parameter`` is named in the OperationOutcome."""

    parameter: str
    message: str


@dataclass(frozen=True)
class ParsedSearch:
    """A query split into filters, result parameters and problems."""

    criteria: list[Criterion]
    result: list[tuple[str, str]]
    problems: list[SearchProblem]


def _check_include(resource_type: str, key: str, raw: str) -> SearchProblem | None:
    parts = raw.split(":")
    if len(parts) not in (2, 3) or (parts[0], parts[1]) not in INCLUDES:
        return SearchProblem(key, f"{key}={raw!r} is not supported")
    source, param = parts[0], parts[1]
    targets = REFERENCE_TARGETS[param]
    if len(parts) == 3 and parts[2] not in targets:
        return SearchProblem(key, f"{key}={raw!r}: {source}:{param} does not point to {parts[2]}")
    if key == "_include" and source != resource_type:
        return SearchProblem(key, f"_include={raw!r} names {source}, but this search returns {resource_type}")
    if key == "_revinclude" and resource_type not in targets:
        return SearchProblem(key, f"_revinclude={raw!r}: {source}:{param} never points to {resource_type}")
    return None


def _check_result_param(resource_type: str, key: str, raw: str) -> SearchProblem | None:
    if key in {"_include", "_revinclude"}:
        return _check_include(resource_type, key, raw)
    if key == "_summary" and raw not in SUMMARY_VALUES:
        return SearchProblem(key, f"_summary={raw!r} is not supported; use one of {', '.join(sorted(SUMMARY_VALUES))}")
    return None


def _check_modifier(resource_type: str, name: str, kind: str, modifier: str, key: str) -> SearchProblem | None:
    if not modifier or modifier in MODIFIERS[kind]:
        return None
    if kind == "reference" and modifier in REFERENCE_TARGETS[name]:
        return None
    if kind == "token" and modifier == "text" and name in TEXT_TOKEN_PARAMS:
        return None
    return SearchProblem(key, f"modifier :{modifier} is not supported on {resource_type}.{name} ({kind})")


def search_parse(resource_type: str, params: list[tuple[str, str]]) -> ParsedSearch:
    """Split ``params`` into criteria and result parameters, listing every unsupported part."""
    criteria: list[Criterion] = []
    result: list[tuple[str, str]] = []
    problems: list[SearchProblem] = []
    for key, raw in params:
        if key in RESULT_PARAMS:
            problem = _check_result_param(resource_type, key, raw)
            if problem is None:
                result.append((key, raw))
            else:
                problems.append(problem)
            continue
        if "." in key:
            problems.append(SearchProblem(key, f"chained search {key!r} is not supported on {resource_type}"))
            continue
        name, _, modifier = key.partition(":")
        kind = param_kind(resource_type, name)
        if kind is None:
            problems.append(SearchProblem(key, f"search parameter {key!r} is not supported on {resource_type}"))
            continue
        problem = _check_modifier(resource_type, name, kind, modifier, key)
        if problem is not None:
            problems.append(problem)
            continue
        if modifier == "missing" and raw not in {"true", "false"}:
            problems.append(SearchProblem(key, f"{key}={raw!r} must be true or false"))
            continue
        criteria.append(Criterion(name=name, kind=kind, modifier=modifier, raw=raw))
    return ParsedSearch(criteria=criteria, result=result, problems=problems)
