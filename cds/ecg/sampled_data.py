"""Decode FHIR R4 ``SampledData`` into numpy arrays.

The FHIR model library checks the shape of a SampledData but not its ``data`` string, so this module
parses it itself: decimals separated by single spaces, plus the tokens ``E`` (error), ``L`` (below
``lowerLimit``) and ``U`` (above ``upperLimit``). value = origin.value + factor × data[i].
Everything here raises ``FhirError`` whose expression names the offending element.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np

from cds.core.exceptions import FhirError

# Characters a valid data string may contain. Anything else (the letters of NaN, Infinity, '_' that
# Python's float() would accept, commas, tabs) is refused before parsing.
_ALLOWED = "0123456789 .-+eELU"
_DELETE_ALLOWED = str.maketrans("", "", _ALLOWED)
_SPECIAL_TOKENS = ("E", "L", "U")


@dataclass(frozen=True)
class DecodedSamples:
    """Samples of one SampledData: ``values`` (dimensions, n) in the origin's unit, NaN where ``E``."""

    values: np.ndarray
    period_ms: float
    unit: str | None
    n_error: int
    n_below: int
    n_above: int


def _number(value: Any, *, expression: str) -> float:
    """Return a FHIR decimal as a finite float; raise FhirError (400 ``value``) for null, text or overflow.

    JSON allows integers of any size and the R4B models pass ``null`` through for some elements, so
    neither may reach ``float()`` unchecked (an OverflowError or ValueError would be a 500).
    """
    number = None
    if isinstance(value, (Decimal, int, float, str)) and not isinstance(value, bool):
        try:
            number = float(value)
        except (OverflowError, ValueError):
            number = None
    if number is None or not math.isfinite(number):
        shown = repr(value) if len(repr(value)) <= 40 else f"{repr(value)[:40]}..."
        raise FhirError.single(400, "value", f"expected a finite decimal, got {shown}", expression)
    return number


def parse_data_string(data: str, *, expression: str) -> tuple[np.ndarray, np.ndarray]:
    """Return ``(values, special)`` for a data string; ``special`` holds 0, or 1/2/3 for E/L/U.

    Shapes: both ``(n,)``; ``values`` is float64 with NaN where ``special`` is non-zero.
    Raises FhirError (400, ``value``) naming the first bad token.
    """
    text = data.strip()
    if not text:
        raise FhirError.single(400, "required", "data is empty", expression)
    leftover = text.translate(_DELETE_ALLOWED)
    if leftover:
        raise FhirError.single(
            400, "value", f"data contains characters not allowed in SampledData: {leftover[:10]!r}", expression
        )
    tokens = text.split(" ")
    try:
        # Fast path: every token is a decimal. numpy parses the list in C.
        values = np.array(tokens, dtype=np.float64)
        special = np.zeros(values.shape, dtype=np.uint8)
    except ValueError:
        values, special = _parse_with_special_tokens(tokens, expression=expression)
    finite = np.isfinite(values) | (special > 0)
    if not finite.all():
        index = int(np.argmin(finite))
        raise FhirError.single(400, "value", f"data value #{index} ({tokens[index]!r}) is not finite", expression)
    return values, special


def _parse_with_special_tokens(tokens: list[str], *, expression: str) -> tuple[np.ndarray, np.ndarray]:
    array = np.array(tokens, dtype=object)
    special = np.zeros(len(tokens), dtype=np.uint8)
    for code, token in enumerate(_SPECIAL_TOKENS, start=1):
        special[array == token] = code
    numeric = special == 0
    values = np.full(len(tokens), np.nan)
    try:
        values[numeric] = np.array(array[numeric].tolist(), dtype=np.float64)
    except ValueError:
        for index in np.flatnonzero(numeric):
            try:
                float(tokens[index])
            except ValueError:
                reason = (
                    "an empty token (values must be separated by single spaces)"
                    if not tokens[index]
                    else repr(tokens[index])
                )
                raise FhirError.single(
                    400, "value", f"data value #{index} is {reason}, not a decimal or E/L/U", expression
                ) from None
        raise
    return values, special


def decode_sampled_data(sampled: dict[str, Any], *, expression: str) -> DecodedSamples:
    """Decode one SampledData JSON object (already shape-checked by the FHIR library).

    1. Parse ``data``; check that ``dimensions`` divides the number of values.
    2. Apply ``origin.value + factor × value``; ``E`` becomes NaN, ``L``/``U`` become the limits (NaN
       when the limit is absent).
    3. De-interleave into ``(dimensions, n)``.
    Raises FhirError for a bad period, dimensions, or data.
    """
    period = _number(sampled.get("period", 0), expression=f"{expression}.period")
    if not period > 0:
        raise FhirError.single(400, "value", f"period must be > 0 ms, got {period}", f"{expression}.period")
    dimensions = int(sampled.get("dimensions", 1))
    if dimensions < 1:
        raise FhirError.single(400, "value", f"dimensions must be ≥ 1, got {dimensions}", f"{expression}.dimensions")
    raw, special = parse_data_string(str(sampled.get("data") or ""), expression=f"{expression}.data")
    if raw.size % dimensions:
        raise FhirError.single(
            400,
            "value",
            f"{raw.size} data values cannot be split into dimensions={dimensions} interleaved channels",
            f"{expression}.dimensions",
        )
    origin = sampled.get("origin") or {}
    if not isinstance(origin, dict):
        raise FhirError.single(400, "structure", "origin must be a Quantity object", f"{expression}.origin")
    offset = _number(origin.get("value", 0), expression=f"{expression}.origin.value")
    values = offset + _number(sampled.get("factor", 1), expression=f"{expression}.factor") * raw
    for code, limit_name in ((2, "lowerLimit"), (3, "upperLimit")):
        limit = sampled.get(limit_name)
        mask = special == code
        if mask.any():
            values[mask] = _number(limit, expression=f"{expression}.{limit_name}") if limit is not None else np.nan
    unit = origin.get("code") or origin.get("unit")
    return DecodedSamples(
        values=values.reshape(-1, dimensions).T,  # interleaved (n*d,) -> (d, n)
        period_ms=period,
        unit=str(unit) if unit is not None else None,
        n_error=int((special == 1).sum()),
        n_below=int((special == 2).sum()),
        n_above=int((special == 3).sum()),
    )
