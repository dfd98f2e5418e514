"""SMART v1/v2 system scopes: what each grant allows, and the 403 that ``require_scope`` raises."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from django.core.exceptions import ValidationError

from cds.core.exceptions import FhirError
from cds.oauth.scopes import require_scope, scope_allows, scope_within, scopes_validate

ALL = "cruds"


@pytest.mark.parametrize(
    ("granted", "resource_type", "allowed"),
    [
        # SMART v2: each letter is one action.
        ("system/Observation.cr", "Observation", "cr"),
        ("system/Observation.cr", "Patient", ""),
        ("system/Patient.rs", "Patient", "rs"),
        ("system/Patient.s", "Patient", "s"),
        ("system/*.cruds", "Observation", ALL),
        ("system/*.cruds", "Patient", ALL),
        ("system/*.rs", "Bundle", "rs"),
        # SMART v1: read = r+s, write = c+u+d, * = everything.
        ("system/Observation.read", "Observation", "rs"),
        ("system/Observation.read", "Patient", ""),
        ("system/*.write", "Patient", "cud"),
        ("system/Observation.*", "Observation", ALL),
        ("system/*.*", "Encounter", ALL),
        # Several grants add up.
        ("system/Patient.c system/Patient.read", "Patient", "crs"),
        ("system/Patient.c system/*.s", "Observation", "s"),
        # Other contexts, granular queries and malformed scopes allow nothing.
        ("patient/Observation.rs", "Observation", ""),
        ("user/*.cruds", "Patient", ""),
        ("system/Observation.rs?category=vital-signs", "Observation", ""),
        ("system/Observation.sr", "Observation", ""),  # v2 letters must be in c-r-u-d-s order
        ("system/Observation.rr", "Observation", ""),
        ("system/Observation.x", "Observation", ""),
        ("system/Observation", "Observation", ""),
        ("system/observation.rs", "Observation", ""),
        ("system/Observation.READ", "Observation", ""),
        ("launch/patient openid fhirUser", "Patient", ""),
        ("", "Patient", ""),
    ],
)
def test_it_allows_exactly_the_granted_actions(granted: str, resource_type: str, allowed: str) -> None:
    grants = frozenset(granted.split())
    for action in ALL:
        assert scope_allows(grants, resource_type, action) == (action in allowed), (granted, resource_type, action)


def test_it_matches_resource_types_exactly() -> None:
    assert not scope_allows(frozenset({"system/Observation.rs"}), "ObservationDefinition", "r")
    assert not scope_allows(frozenset({"system/Patient.rs"}), "patient", "r")


@pytest.mark.parametrize("action", ["", "x", "read", "cr", "R"])
def test_it_rejects_an_unknown_action_as_a_programming_error(action: str) -> None:
    with pytest.raises(ValueError, match="action must be one of"):
        scope_allows(frozenset({"system/*.*"}), "Patient", action)


@pytest.mark.parametrize(
    ("requested", "granted", "within"),
    [
        ("system/Observation.r", "system/*.cruds", True),
        ("system/Observation.read", "system/Observation.rs", True),
        ("system/Observation.rs", "system/Observation.read", True),
        ("system/*.rs", "system/*.read", True),
        ("system/Observation.cr", "system/Observation.c system/Observation.r", True),
        ("system/Observation.cr", "system/Observation.r", False),
        ("system/*.rs", "system/Patient.rs system/Observation.rs", False),
        ("system/Observation.write", "system/Observation.cr", False),
        ("system/Observation.r?code=x", "system/*.*", False),
    ],
)
def test_it_decides_whether_a_request_narrows_the_grant(requested: str, granted: str, within: bool) -> None:
    assert scope_within(requested, frozenset(granted.split())) is within


@pytest.mark.parametrize("text", ["system/*.cruds", "system/Patient.crs  system/Observation.read", "system/*.*"])
def test_it_accepts_enforceable_scope_lists(text: str) -> None:
    scopes_validate(text)


@pytest.mark.parametrize("text", ["", "   ", "system/*.cruds openid", "patient/*.rs", "system/Observation.rs?code=x"])
def test_it_refuses_scope_lists_it_cannot_enforce(text: str) -> None:
    with pytest.raises(ValidationError):
        scopes_validate(text)


def test_it_lets_require_scope_pass_when_allowed() -> None:
    request = SimpleNamespace(user=SimpleNamespace(scopes=frozenset({"system/Observation.cr"})))
    require_scope(request, "Observation", "c")


def test_it_raises_a_403_operation_outcome_error_when_not_allowed() -> None:
    request = SimpleNamespace(user=SimpleNamespace(scopes=frozenset({"system/Observation.rs"})))
    with pytest.raises(FhirError) as caught:
        require_scope(request, "Observation", "c")
    assert caught.value.status == 403
    assert [(i.code, i.diagnostics) for i in caught.value.issues] == [
        ("forbidden", "scope does not allow c on Observation")
    ]


def test_it_refuses_a_request_without_a_principal() -> None:
    with pytest.raises(FhirError):
        require_scope(SimpleNamespace(user=None), "Patient", "r")
