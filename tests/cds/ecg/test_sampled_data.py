"""Unit and property-based tests of the SampledData decoder (no database)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cds.core.exceptions import FhirError
from cds.ecg.sampled_data import decode_sampled_data, parse_data_string

EXPR = "Observation.component[0].valueSampledData"


def sampled(data: str, **extra: object) -> dict[str, object]:
    return {"origin": {"value": 0, "unit": "uV"}, "period": 2, "dimensions": 1, "data": data, **extra}


def test_it_applies_origin_and_factor() -> None:
    decoded = decode_sampled_data(sampled("1 2 -3", origin={"value": 10, "unit": "mV"}, factor=0.5), expression=EXPR)
    np.testing.assert_allclose(decoded.values[0], [10.5, 11.0, 8.5])
    assert decoded.unit == "mV"
    assert decoded.period_ms == 2


def test_it_deinterleaves_dimensions() -> None:
    decoded = decode_sampled_data(sampled("1 10 2 20 3 30", dimensions=2), expression=EXPR)
    np.testing.assert_array_equal(decoded.values, [[1, 2, 3], [10, 20, 30]])


def test_it_maps_error_and_limit_tokens() -> None:
    decoded = decode_sampled_data(sampled("1 E L U 5", lowerLimit=-100, upperLimit=100), expression=EXPR)
    values = decoded.values[0]
    assert np.isnan(values[1])
    assert values[2] == -100 and values[3] == 100 and values[4] == 5
    assert (decoded.n_error, decoded.n_below, decoded.n_above) == (1, 1, 1)


def test_it_leaves_limit_tokens_nan_without_limits() -> None:
    decoded = decode_sampled_data(sampled("1 L U"), expression=EXPR)
    assert np.isnan(decoded.values[0][1:]).all()


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        ("1 2 x", "not allowed"),
        ("1 NaN 2", "not allowed"),
        ("1 Infinity", "not allowed"),
        ("1 1e999", "not finite"),
        ("1  2", "empty token"),
        ("1 2.3.4", "'2.3.4'"),
        ("1,2,3", "not allowed"),
        ("1_000 2", "not allowed"),
        ("", "empty"),
    ],
)
def test_it_rejects_garbage_naming_the_data_element(data: str, fragment: str) -> None:
    with pytest.raises(FhirError) as caught:
        decode_sampled_data(sampled(data), expression=EXPR)
    assert caught.value.status == 400
    assert fragment in caught.value.issues[0].diagnostics
    assert caught.value.issues[0].expression[0].startswith(EXPR)


def test_it_rejects_dimensions_that_do_not_divide_the_data() -> None:
    with pytest.raises(FhirError) as caught:
        decode_sampled_data(sampled("1 2 3", dimensions=2), expression=EXPR)
    assert caught.value.issues[0].expression == (f"{EXPR}.dimensions",)


def test_it_rejects_a_non_positive_period() -> None:
    with pytest.raises(FhirError) as caught:
        decode_sampled_data(sampled("1 2", period=0), expression=EXPR)
    assert caught.value.issues[0].expression == (f"{EXPR}.period",)


finite_values = st.lists(st.integers(min_value=-(2**31), max_value=2**31), min_size=1, max_size=400)


@settings(max_examples=200, deadline=None)
@given(values=finite_values, factor=st.sampled_from([1, 0.5, 2.44, 4.88]), origin=st.integers(-5000, 5000))
def test_it_round_trips_any_integer_sequence(values: list[int], factor: float, origin: int) -> None:
    data = " ".join(map(str, values))
    decoded = decode_sampled_data(sampled(data, factor=factor, origin={"value": origin}), expression=EXPR)
    np.testing.assert_allclose(decoded.values[0], origin + factor * np.array(values, dtype=float), rtol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    tokens=st.lists(
        st.one_of(
            st.floats(allow_nan=False, allow_infinity=False, width=32).map(lambda f: repr(float(f))),
            st.sampled_from(["E", "L", "U"]),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_it_parses_mixed_decimals_and_special_tokens(tokens: list[str]) -> None:
    values, special = parse_data_string(" ".join(tokens), expression=EXPR)
    assert values.shape == special.shape == (len(tokens),)
    for token, value, code in zip(tokens, values, special, strict=True):
        if token in {"E", "L", "U"}:
            assert code == "ELU".index(token) + 1 and np.isnan(value)
        else:
            assert code == 0 and value == float(token)


@settings(max_examples=300, deadline=None)
@given(text=st.text(max_size=60))
def test_it_never_crashes_on_arbitrary_text(text: str) -> None:
    try:
        values, special = parse_data_string(text, expression=EXPR)
    except FhirError as error:
        assert error.status == 400
    else:
        assert np.isfinite(values[special == 0]).all()
