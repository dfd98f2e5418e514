"""Hypothesis strategies for fuzzing the FHIR API: arbitrary JSON and mutated ECG Observations/Bundles.

Mutations model what goes wrong between an EHR and us: elements deleted, values of the wrong type,
huge, tiny, NaN and infinite numbers, odd unicode (controls, bidi marks, combining characters,
non-ASCII digits), deep nesting, and a SampledData ``data`` string with damaged tokens.
"""

from __future__ import annotations

import copy
import json
import os
from typing import Any

import numpy as np
from hypothesis import strategies as st

from cds.ecg.encoding import ecg_observation, ecg_transaction_bundle

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
# Scale every fuzz test's example count by hand: FUZZ_EXAMPLES=2000 pytest tests/fuzz
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0")) or None

ODD_TEXT = st.sampled_from(
    [
        "",
        " ",
        "\u202e\u0645\u0631\u062d\u0628\u0627",  # right-to-left override, Arabic
        "e\u0301\u0301\u0301",  # stacked combining accents
        "\U0001f493\U0001f3e5",  # emoji outside the BMP
        "\ufeffbom",
        "\u0661\u0662\u0663",  # Arabic-Indic digits: float() reads them, FHIR decimals must not
        "\x01\x1f\x7f",
        "\u2028\u2029",  # line/paragraph separators
        "lone \ud800 surrogate",  # valid JSON escape, not encodable as UTF-8
        "A" * 10_000,
    ]
)
NUMBERS = st.one_of(
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([0, -0.0, 1e308, -1e308, 5e-324, 10**30, -(10**40), 2**63, 2**64 + 1]),
)
# JSON text a serializer will not write: NaN/Infinity literals and numbers beyond float range.
RAW_NUMBER_LITERALS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1" + "0" * 400]
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=20), ODD_TEXT)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)
FHIR_KEYS = st.sampled_from(
    [
        "resourceType",
        "id",
        "status",
        "code",
        "subject",
        "component",
        "valueSampledData",
        "data",
        "period",
        "origin",
        "dimensions",
        "identifier",
        "entry",
        "type",
        "request",
        "resource",
        "fullUrl",
        "effectiveDateTime",
        "birthDate",
        "meta",
    ]
)
RESOURCE_TYPES = st.sampled_from(["Observation", "Bundle", "Patient", "OperationOutcome", "observation", ""])
FHIRISH_OBJECTS = st.builds(
    lambda resource_type, body: {"resourceType": resource_type, **body},
    RESOURCE_TYPES,
    st.dictionaries(FHIR_KEYS, JSON_VALUES, max_size=6),
)
DATA_TOKENS = st.sampled_from(
    ["NaN", "1e999", "--1", "0x1F", "E", "L", "U", "", "1.2.3", "+", "\u0661", "1,5", "9" * 40]
)


def small_ecg() -> dict[str, Any]:
    """Return a valid 12-lead, 3 s, 500 Hz ECG Observation (small, so each example stays fast)."""
    t = np.arange(1500) / 500.0
    samples = np.stack([800 * np.sin(2 * np.pi * 1.2 * t + lead) for lead in range(12)]).astype(np.float32)
    return ecg_observation(
        samples,
        sample_rate_hz=500,
        leads=LEADS_12,
        identifier=("urn:oid:1.2.3.4.ecg", "fuzz-ecg"),
        effective="2024-03-01T10:00:00Z",
    )


def small_bundle() -> dict[str, Any]:
    """Return a valid transaction Bundle with a Patient and the small ECG."""
    patient = {
        "resourceType": "Patient",
        "identifier": [{"system": "urn:oid:1.2.3.4.mrn", "value": "FUZZ-1"}],
        "gender": "male",
        "birthDate": "1950",
    }
    return ecg_transaction_bundle(patient=patient, observation=small_ecg())


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Return the path (keys and indexes) of every node below ``value``."""
    found = []
    if isinstance(value, dict):
        for key, item in value.items():
            found.append((*prefix, key))
            found.extend(paths(item, (*prefix, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.append((*prefix, index))
            found.extend(paths(item, (*prefix, index)))
    return found


def _parent(document: Any, path: tuple[Any, ...]) -> Any:
    node = document
    for step in path[:-1]:
        node = node[step]
    return node


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], max_mutations: int = 3) -> str:
    """Return the JSON text of ``base`` after one to ``max_mutations`` random mutations."""
    document = copy.deepcopy(base)
    raw_literal = None
    for _ in range(draw(st.integers(1, max_mutations))):
        candidates = paths(document)
        if not candidates:
            break
        path = draw(st.sampled_from(candidates))
        parent, key = _parent(document, path), path[-1]
        current = parent[key]
        operation = draw(st.sampled_from(["delete", "replace", "number", "unicode", "nest", "swap", "data", "raw"]))
        if operation == "delete":
            del parent[key]
        elif operation == "replace":
            parent[key] = draw(JSON_VALUES)
        elif operation == "number":
            parent[key] = draw(NUMBERS)
        elif operation == "unicode":
            parent[key] = draw(ODD_TEXT) if not isinstance(current, str) else current + draw(ODD_TEXT)
        elif operation == "nest":
            depth = draw(st.integers(2, 200))
            for _level in range(depth):
                current = [current] if draw(st.booleans()) else {"x": current}
            parent[key] = current
        elif operation == "swap":
            parent[key] = {
                str: lambda v: [v],
                int: str,
                float: str,
                bool: lambda v: "true" if v else 0,
                list: lambda v: dict(enumerate(map(str, v))) if v else {},
                dict: lambda v: list(v.values()),
                type(None): lambda v: {},
            }[type(current)](current)
        elif operation == "data":
            data_paths = [p for p in candidates if p[-1] == "data" and isinstance(_parent(document, p)[p[-1]], str)]
            if data_paths:
                data_path = draw(st.sampled_from(data_paths))
                holder = _parent(document, data_path)
                tokens = holder["data"].split(" ")
                index = draw(st.integers(0, len(tokens) - 1))
                tokens[index] = draw(DATA_TOKENS)
                holder["data"] = " ".join(tokens) if draw(st.booleans()) else "  ".join(tokens)
        else:
            raw_literal = draw(st.sampled_from(RAW_NUMBER_LITERALS))
            parent[key] = "__RAW_NUMBER__"
    text = json.dumps(document)
    if raw_literal is not None:
        text = text.replace('"__RAW_NUMBER__"', raw_literal)
    return text


def fuzz_settings(default_examples: int) -> dict[str, Any]:
    """Return hypothesis settings: a bounded deterministic run by default, more with FUZZ_EXAMPLES."""
    from hypothesis import HealthCheck

    return {
        "max_examples": EXAMPLES or default_examples,
        "deadline": None,
        "derandomize": EXAMPLES is None,
        "suppress_health_check": [
            HealthCheck.function_scoped_fixture,
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
        ],
        "database": None,
    }
