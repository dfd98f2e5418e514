"""Redact obvious PHI from log records: defence in depth behind logging ids only (docs/security.md).

Our own log calls name resource, job and message ids, never patient data. What could still carry
PHI is text we do not control: an exception message that quotes its input (pydantic's
``input_value=...``), a remote EHR's OperationOutcome diagnostics, a repr of a resource. This filter
rewrites such text before a handler writes it:

- a run of eight or more numbers (a SampledData ``data`` string, with its ``E``/``L``/``U`` tokens);
- the value of a demographic or identifier key in JSON or a Python repr (``"birthDate": "1968-05"``,
  ``'family': 'Doe'``, ``"value": "MRN-1"``);
- pydantic's ``input_value=...`` quotes of what failed validation.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import MappingProxyType

REDACTED = "[redacted]"
_NUMBER = r"(?:[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[ELU])"
_SAMPLES = re.compile(rf"{_NUMBER}(?:[ \t,]+{_NUMBER}){{7,}}")
_PHI_KEYS = (
    "birthDate|deceasedDateTime|family|given|name|prefix|suffix|text|value|line|city|district|state|"
    "postalCode|telecom|address|identifier|data"
)
_QUOTED = r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'"
_KEY_VALUE = re.compile(rf"(?P<key>([\"']?)\b(?:{_PHI_KEYS})\b\2\s*[:=]\s*)(?P<value>{_QUOTED}|\[[^\]]*\])")
_INPUT_VALUE = re.compile(r"input_value=.*?(?=, input_type=|$)", re.MULTILINE)


def phi_redact(text: str) -> str:
    """Return ``text`` with waveform runs, demographic/identifier values and pydantic input quotes redacted."""
    text = _INPUT_VALUE.sub(f"input_value={REDACTED}", text)
    text = _KEY_VALUE.sub(lambda m: f"{m['key']}{REDACTED!r}", text)
    return _SAMPLES.sub("[samples redacted]", text)


class RedactPhiFilter(logging.Filter):
    """Rewrite a record's message and traceback text through ``phi_redact``; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = phi_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            # Formatter.format uses exc_text when set, so the traceback is formatted once, redacted.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = phi_redact(record.exc_text)
        return True


# --- Operations (issue 16): structured logs with the request and job they belong to ---------------

_CONTEXT: ContextVar[Mapping[str, str]] = ContextVar("cds_log_context", default=MappingProxyType({}))
# The ids a log line may carry (never patient data): the web request's, the Celery task's, ours.
CONTEXT_KEYS = ("request_id", "task_id", "task", "job_id", "message_id")


def log_context_get() -> dict[str, str]:
    """Return the ids bound to the current request or task."""
    return dict(_CONTEXT.get())


def log_context_bind(**values: object) -> Token[Mapping[str, str]]:
    """Add ``values`` to the current context; return the token that ``log_context_reset`` takes."""
    return _CONTEXT.set({**_CONTEXT.get(), **{k: str(v) for k, v in values.items() if v is not None}})


def log_context_reset(token: Token[Mapping[str, str]]) -> None:
    """Restore the context from before the ``log_context_bind`` that returned ``token``."""
    _CONTEXT.reset(token)


@contextmanager
def log_context(**values: object) -> Iterator[None]:
    """Bind ``values`` (e.g. ``job_id``) to every log line written inside the block."""
    token = log_context_bind(**values)
    try:
        yield
    finally:
        log_context_reset(token)


class ContextFilter(logging.Filter):
    """Copy the bound ids onto each record (``record.request_id`` ...), empty when unbound."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CONTEXT.get()
        for key in CONTEXT_KEYS:
            if not hasattr(record, key):
                setattr(record, key, context.get(key, ""))
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the bound ids and any traceback."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "process": record.process,
        }
        entry |= {key: value for key in CONTEXT_KEYS if (value := getattr(record, key, ""))}
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, ensure_ascii=False)
