"""The one error a launch ends with when it is refused: the page status and what the clinician reads."""

from __future__ import annotations

from typing import Any


class LaunchRefused(Exception):
    """A launch that cannot go on: ``status`` for the page, ``reason`` (a short code) for the audit trail."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.ehr: Any = None  # the registered EHR, once known (for the audit trail)
        self.details: dict[str, str] = {}  # what else the audit trail should name (never PHI beyond ids)
