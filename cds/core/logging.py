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

import logging
import re

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
