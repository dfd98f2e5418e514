"""Define the errors of model inference, each marked transient or permanent (docs/style.md G4, G14).

Retry logic (the client's own backoff, Celery's ``autoretry_for``) reads ``transient``: a transient
error may succeed if the same call is repeated later; a permanent one will not.
"""

from __future__ import annotations

from typing import Any


class InferenceError(Exception):
    """Base of every inference error; ``transient`` says whether retrying can help."""

    transient_default = False

    def __init__(self, message: str, transient: bool | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.transient = self.transient_default if transient is None else transient
        self.extra = extra or {}


class TritonUnavailable(InferenceError):
    """Triton could not be reached or did not answer in time (connection refused, deadline, 503)."""

    transient_default = True


class ModelNotFound(InferenceError):
    """Triton does not serve the model (unknown, not loaded, or failed to load)."""


class ModelVersionMismatch(InferenceError):
    """Triton serves the model, but not the version this service expects."""


class InferenceFailed(InferenceError):
    """Triton rejected the request or the model failed on it (bad input, model error)."""


class UnscorableEcg(InferenceError):
    """The ECG itself cannot be scored (too short, no usable lead): retrying will not help."""
