"""The organisation (tenant) a request acts for: the authenticated API client's."""

from __future__ import annotations

from typing import Any

from cds.core.exceptions import FhirError


def request_organization_id(request: Any) -> int:
    """Return the organisation of the request's API client; 403 when the request has none.

    Fails closed like ``require_scope``: a view that forgot its authentication reads nothing.
    """
    organization_id = getattr(getattr(request, "user", None), "organization_id", None)
    if not isinstance(organization_id, int):
        raise FhirError.single(403, "forbidden", "the caller belongs to no organisation")
    return organization_id
