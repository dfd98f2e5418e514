"""Errors of the review workflow (raised by services, decided by selectors.review_access)."""

from __future__ import annotations

from cds.core.exceptions import ApplicationError


class ReviewPermissionDenied(ApplicationError):
    """Raise when the user may not see or do this."""

    http_status = 403


class ReviewConflict(ApplicationError):
    """Raise when the review is not in a state that allows the action (e.g. claimed by someone else)."""

    http_status = 409
