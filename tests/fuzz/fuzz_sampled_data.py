"""Coverage-guided fuzzing (atheris/libFuzzer) of the SampledData decoder, ``cds.ecg.sampled_data``.

Run by hand for as long as you like (Ctrl-C stops; a crash writes ``crash-<sha>`` to reproduce)::

    .venv/bin/python tests/fuzz/fuzz_sampled_data.py -runs=1000000 [-max_len=4096] [corpus_dir]

``tests/fuzz/test_sampled_data_atheris.py`` runs it for a few thousand iterations in the suite.

Input contract, as in production: the FHIR model library has already checked the SampledData's
shape (``period`` and ``factor`` decimals, ``dimensions`` a positive integer, ``origin`` a
Quantity), so the fuzzer varies values freely within those types and the ``data`` string without
any limit. The decoder must either return values of shape ``(dimensions, n)`` or raise a 400
``FhirError`` whose expression lies inside the SampledData; anything else is a crash.
"""

from __future__ import annotations

import sys
from decimal import Decimal
from typing import Any

import atheris
import numpy  # noqa: F401 - imported (uninstrumented) first: only our decoder is worth coverage feedback

with atheris.instrument_imports():
    from cds.core.exceptions import FhirError
    from cds.ecg.sampled_data import decode_sampled_data

EXPRESSION = "Observation.component[0].valueSampledData"
# Known crashes to skip so fuzzing goes on to find new ones. None now: the OverflowError this harness
# found (a decimal beyond float range) is refused as a 400 by ``_number``.
KNOWN_BUGS: tuple[type[Exception], ...] = ()
# Tokens a data string is made of, so the fuzzer reaches the parser's deeper paths quickly.
TOKENS = ["1", "-2", "3.5", "1e3", "E", "L", "U", "0", "+4", "-", ".", "e", "  ", " ", "1E-9", "99999999999999999999"]


def _decimal(fdp: atheris.FuzzedDataProvider) -> Any:
    """Return what a FHIR decimal arrives as after model validation: an int, a float or a Decimal."""
    kind = fdp.ConsumeIntInRange(0, 3)
    if kind == 0:
        return fdp.ConsumeIntInRange(-(10**6), 10**6)
    if kind == 3:  # JSON integers have no limit, and the FHIR library passes them on
        return fdp.ConsumeInt(fdp.ConsumeIntInRange(1, 160))
    value = fdp.ConsumeRegularFloat()
    return Decimal(repr(value)) if kind == 2 else value


def _data(fdp: atheris.FuzzedDataProvider) -> str:
    if fdp.ConsumeBool():
        return fdp.ConsumeUnicodeNoSurrogates(fdp.ConsumeIntInRange(0, 512))
    return " ".join(TOKENS[fdp.ConsumeIntInRange(0, len(TOKENS) - 1)] for _ in range(fdp.ConsumeIntInRange(0, 64)))


def sampled_from_bytes(data: bytes) -> dict[str, Any]:
    """Return a shape-valid SampledData JSON object built from the fuzzer's bytes."""
    fdp = atheris.FuzzedDataProvider(data)
    sampled: dict[str, Any] = {
        "origin": {"value": _decimal(fdp), "unit": ["uV", "mV", "µV", ""][fdp.ConsumeIntInRange(0, 3)]},
        "period": _decimal(fdp),
        "dimensions": fdp.ConsumeIntInRange(1, 16),
        "data": _data(fdp),
    }
    for optional in ("factor", "lowerLimit", "upperLimit"):
        if fdp.ConsumeBool():
            sampled[optional] = _decimal(fdp)
    return sampled


def test_one_input(data: bytes) -> None:
    """Decode one input; raise (a crash for libFuzzer) when the decoder breaks its contract."""
    sampled = sampled_from_bytes(data)
    try:
        decoded = decode_sampled_data(sampled, expression=EXPRESSION)
    except KNOWN_BUGS:
        return
    except FhirError as error:
        if error.status != 400 or not all(e.startswith(EXPRESSION) for i in error.issues for e in i.expression):
            raise AssertionError(f"bad refusal for {sampled!r}: {error.status} {error.issues}") from error
        return
    dimensions = sampled["dimensions"]
    if decoded.values.ndim != 2 or decoded.values.shape[0] != dimensions or decoded.period_ms <= 0:
        raise AssertionError(f"bad decode of {sampled!r}: shape {decoded.values.shape}, period {decoded.period_ms}")


def main(argv: list[str]) -> None:
    atheris.Setup(argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
