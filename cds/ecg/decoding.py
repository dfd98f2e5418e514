"""Turn a validated ECG ``Observation`` (FHIR JSON) into a waveform in microvolts."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from django.conf import settings

from cds.core.exceptions import FhirError
from cds.ecg.leads import LEAD_BY_MDC_CODE, MDC_SYSTEMS, MICROVOLTS_PER_UNIT, STANDARD_LEADS
from cds.ecg.sampled_data import decode_sampled_data


@dataclass(frozen=True)
class DecodedEcg:
    """A decoded ECG: ``samples_uv`` is float32 ``(leads, samples)`` in the order of ``leads``."""

    leads: tuple[str, ...]
    samples_uv: np.ndarray
    sample_rate_hz: float
    quality: dict[str, Any] = field(default_factory=dict)

    @property
    def duration_s(self) -> float:
        """Return the recording length in seconds."""
        return self.samples_uv.shape[1] / self.sample_rate_hz


def _lead_codes(component: dict[str, Any], *, expression: str) -> list[str]:
    codings = (component.get("code") or {}).get("coding") or []
    mdc = [c for c in codings if c.get("system") in MDC_SYSTEMS]
    if not mdc:
        raise FhirError.single(
            422,
            "required",
            "a component with valueSampledData needs a lead code in urn:iso:std:iso:11073:10101 (MDC)",
            f"{expression}.code",
        )
    leads = []
    for index, coding in enumerate(mdc):
        code = str(coding.get("code"))
        if code not in LEAD_BY_MDC_CODE:
            raise FhirError.single(
                422,
                "code-invalid",
                f"MDC code {code!r} is not one of the 12 standard ECG leads",
                f"{expression}.code.coding[{codings.index(coding)}].code" if index >= 0 else expression,
            )
        leads.append(LEAD_BY_MDC_CODE[code])
    return leads


def _to_microvolts(values: np.ndarray, unit: str | None, *, expression: str) -> tuple[np.ndarray, bool]:
    """Return values in µV and whether the unit was assumed (absent in the source)."""
    if unit is None:
        # The spec's own example omits the unit; integer-coded ECG streams are almost always µV.
        return values, True
    scale = MICROVOLTS_PER_UNIT.get(unit)
    if scale is None:
        raise FhirError.single(
            422, "value", f"unit {unit!r} is not a voltage unit we accept (uV, mV, V)", f"{expression}.origin"
        )
    return values * scale, False


def ecg_decode(observation: dict[str, Any]) -> DecodedEcg:
    """Decode every lead of an ECG Observation and check it against the acceptance limits.

    1. Each component with ``valueSampledData`` is a lead (or ``dimensions`` leads); leads come by
       MDC code; several components of one lead are chunks, concatenated in order.
    2. Values are converted to µV; every lead must share one sampling period and length.
    3. Rate, duration and amplitude are checked against settings (``ECG_*``).
    Raises FhirError naming the element at fault.
    """
    chunks: dict[str, list[np.ndarray]] = {}
    periods: dict[str, tuple[float, str]] = {}
    quality: dict[str, Any] = {"unit_assumed": False, "n_error": 0, "n_below": 0, "n_above": 0}
    for index, component in enumerate(observation.get("component") or []):
        sampled = component.get("valueSampledData")
        if sampled is None:
            continue
        expression = f"Observation.component[{index}]"
        leads = _lead_codes(component, expression=expression)
        decoded = decode_sampled_data(sampled, expression=f"{expression}.valueSampledData")
        if decoded.values.shape[0] != len(leads):
            raise FhirError.single(
                422,
                "value",
                f"dimensions={decoded.values.shape[0]} but the component's code names {len(leads)} lead(s)",
                f"{expression}.valueSampledData.dimensions",
            )
        values_uv, assumed = _to_microvolts(decoded.values, decoded.unit, expression=f"{expression}.valueSampledData")
        quality["unit_assumed"] |= assumed
        for key in ("n_error", "n_below", "n_above"):
            quality[key] += getattr(decoded, key)
        for lead, channel in zip(leads, values_uv, strict=True):
            chunks.setdefault(lead, []).append(channel)
            if lead in periods and abs(periods[lead][0] - decoded.period_ms) > 1e-9:
                raise FhirError.single(
                    422,
                    "value",
                    f"lead {lead} changes its period between chunks",
                    f"{expression}.valueSampledData.period",
                )
            periods.setdefault(lead, (decoded.period_ms, f"{expression}.valueSampledData"))
    if not chunks:
        raise FhirError.single(
            422,
            "required",
            "an ECG Observation needs at least one component with valueSampledData",
            "Observation.component",
        )
    return _assemble(chunks, periods, quality)


def _assemble(
    chunks: dict[str, list[np.ndarray]], periods: dict[str, tuple[float, str]], quality: dict[str, Any]
) -> DecodedEcg:
    leads = tuple(lead for lead in STANDARD_LEADS if lead in chunks)
    signals = [np.concatenate(chunks[lead]) for lead in leads]
    # Compare every lead with the most common period and length, so the odd lead is the one named.
    first_period = Counter(periods[lead][0] for lead in leads).most_common(1)[0][0]
    common_length = Counter(signal.size for signal in signals).most_common(1)[0][0]
    for lead, signal in zip(leads, signals, strict=True):
        period, expression = periods[lead]
        if abs(period - first_period) > 1e-9:
            raise FhirError.single(
                422,
                "value",
                f"lead {lead} has period {period} ms but the other leads have {first_period} ms",
                f"{expression}.period",
            )
        if signal.size != common_length:
            raise FhirError.single(
                422,
                "value",
                f"lead {lead} has {signal.size} samples but the other leads have {common_length}",
                f"{expression}.data",
            )
    rate = 1000.0 / first_period
    _, expression = periods[leads[0]]
    if not settings.ECG_MIN_RATE_HZ <= rate <= settings.ECG_MAX_RATE_HZ:
        raise FhirError.single(
            422,
            "value",
            f"sampling rate {rate:g} Hz is outside {settings.ECG_MIN_RATE_HZ:g}–{settings.ECG_MAX_RATE_HZ:g} Hz",
            f"{expression}.period",
        )
    samples = np.stack(signals).astype(np.float32)
    duration = samples.shape[1] / rate
    if not settings.ECG_MIN_SECONDS <= duration <= settings.ECG_MAX_SECONDS:
        raise FhirError.single(
            422,
            "value",
            f"recording lasts {duration:.2f} s; accepted are {settings.ECG_MIN_SECONDS:g}–{settings.ECG_MAX_SECONDS:g} s",
            f"{expression}.data",
        )
    peak = float(np.nanmax(np.abs(samples))) if np.isfinite(samples).any() else 0.0
    if peak > settings.ECG_MAX_ABS_MV * 1000:
        lead_index = int(np.nanargmax(np.nanmax(np.abs(samples), axis=1)))
        raise FhirError.single(
            422,
            "value",
            f"lead {leads[lead_index]} reaches {peak / 1000:.1f} mV, beyond ±{settings.ECG_MAX_ABS_MV:g} mV",
            f"{periods[leads[lead_index]][1]}.data",
        )
    return DecodedEcg(leads=leads, samples_uv=samples, sample_rate_hz=rate, quality=quality)
