"""The service's error hierarchy (docs/style.md G4).

``ApplicationError`` is what services raise for a request they refuse. ``FhirError`` carries what an
``OperationOutcome`` needs (HTTP status, issue code, FHIRPath expression). Infrastructure errors carry a
``transient`` flag that retry logic reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class ApplicationError(Exception):
    """Raise for a request the service refuses; rendered as ``{message, extra}`` off FHIR routes."""

    http_status = 400

    def __init__(self, message: str, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra or {}


@dataclass(frozen=True)
class FhirIssue:
    """One ``OperationOutcome.issue``: severity, code, diagnostics and FHIRPath expressions."""

    code: str
    diagnostics: str
    expression: tuple[str, ...] = ()
    severity: str = "error"

    def as_fhir(self) -> dict[str, Any]:
        """Return the issue as FHIR JSON."""
        issue: dict[str, Any] = {
            "severity": self.severity,
            "code": self.code,
            "diagnostics": self.diagnostics,
        }
        if self.expression:
            issue["expression"] = list(self.expression)
        return issue


@dataclass
class FhirError(ApplicationError):
    """Raise to answer a FHIR request with an ``OperationOutcome`` and ``status``."""

    status: int
    issues: list[FhirIssue] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        message = "; ".join(i.diagnostics for i in self.issues) or f"HTTP {self.status}"
        ApplicationError.__init__(self, message)
        self.http_status = self.status

    @classmethod
    def single(
        cls,
        status: int,
        code: str,
        diagnostics: str,
        expression: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> FhirError:
        """Build an error with one issue."""
        issue = FhirIssue(code=code, diagnostics=diagnostics, expression=(expression,) if expression else ())
        return cls(status=status, issues=[issue], headers=headers or {})

    def prefixed(self, prefix: str) -> FhirError:
        """Return a copy whose expressions and diagnostics are relative to ``prefix`` (a Bundle entry)."""
        issues = [
            FhirIssue(
                code=i.code,
                severity=i.severity,
                diagnostics=f"{prefix}: {i.diagnostics}",
                expression=tuple(f"{prefix}.{e}" for e in i.expression),
            )
            for i in self.issues
        ]
        return FhirError(status=self.status, issues=issues, headers=self.headers)


class InfrastructureError(Exception):
    """Raise when a dependency (Triton, a remote FHIR server) fails; ``transient`` drives retries."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient
