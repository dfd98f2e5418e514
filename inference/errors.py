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

    @property
    def retry_later(self) -> bool:
        """Return whether a job that failed with this error should run again later (docs/style.md E4).

        ``transient`` answers for the call itself (repeat it now, within the client's backoff); a
        job retried minutes later also outlasts what a call cannot, such as a model still loading.
        """
        return self.transient


class TritonUnavailable(InferenceError):
    """Triton could not be reached or did not answer in time (connection refused, deadline, 503)."""

    transient_default = True


class ModelNotFound(InferenceError):
    """Triton does not serve the model (unknown, not loaded, or failed to load)."""

    @property
    def retry_later(self) -> bool:
        # Triton reports its models missing while it (re)loads its repository after a restart:
        # not worth repeating the call now, worth running the job again later.
        return True


class ModelVersionMismatch(InferenceError):
    """Triton serves the model, but not the version this service expects."""


class InferenceFailed(InferenceError):
    """Triton rejected the request or the model failed on it (bad input, model error)."""


class UnscorableEcg(InferenceError):
    """The ECG itself cannot be scored (too short, no usable lead): retrying will not help."""
