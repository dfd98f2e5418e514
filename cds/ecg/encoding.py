"""Build FHIR ECG Observations from waveforms (what an EHR or ECG cart sends us).

Used by the demo sender, the tests and the benchmarks; also the reference for how integrators
should encode ECGs for this service.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from cds.ecg.leads import LOINC_EKG_STUDY, LOINC_SYSTEM, MDC_CODE_BY_LEAD, MDC_ECG_ELEC_POTL, MDC_SYSTEM


def sampled_data_string(values: np.ndarray) -> str:
    """Return integer samples as a SampledData ``data`` string (single spaces)."""
    return " ".join(map(str, np.asarray(values, dtype=np.int64).tolist()))


@dataclass(frozen=True)
class LeadSamples:
    """One lead's integer codes and the SampledData scale that turns them into µV (origin + factor × code)."""

    lead: str
    codes: np.ndarray
    factor_uv: float
    origin_uv: float = 0.0


def sampled_data_observation(
    leads: Iterable[LeadSamples],
    *,
    period_ms: float,
    identifier: dict[str, str] | None = None,
    subject: dict[str, Any] | None = None,
    effective: str | None = None,
) -> dict[str, Any]:
    """Return an ECG Observation (LOINC EKG study, MDC codes) with one ``valueSampledData`` per lead.

    The one builder of the ECG Observation's shape: waveforms sent as arrays (``ecg_observation``)
    and decoded ECG documents (``cds.ecg.documents``) both go through it.
    """
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "procedure"}]}
        ],
        "code": {
            "coding": [
                {"system": LOINC_SYSTEM, "code": LOINC_EKG_STUDY, "display": "EKG study"},
                {"system": MDC_SYSTEM, "code": MDC_ECG_ELEC_POTL, "display": "MDC_ECG_ELEC_POTL"},
            ]
        },
        "component": [
            {
                "code": {
                    "coding": [
                        {"system": MDC_SYSTEM, "code": MDC_CODE_BY_LEAD[one.lead], "display": f"Lead {one.lead}"}
                    ]
                },
                "valueSampledData": {
                    "origin": {
                        "value": one.origin_uv,
                        "unit": "uV",
                        "system": "http://unitsofmeasure.org",
                        "code": "uV",
                    },
                    "period": period_ms,
                    "factor": one.factor_uv,
                    "dimensions": 1,
                    "data": sampled_data_string(one.codes),
                },
            }
            for one in leads
        ],
    }
    if identifier:
        observation["identifier"] = [dict(identifier)]
    if subject:
        observation["subject"] = dict(subject)
    if effective:
        observation["effectiveDateTime"] = effective
    return observation


def ecg_observation(
    samples_uv: np.ndarray,
    *,
    sample_rate_hz: float,
    leads: tuple[str, ...] | list[str],
    identifier: tuple[str, str] | None = None,
    patient_reference: str | None = None,
    effective: str | None = None,
    resolution_uv: float = 1.0,
) -> dict[str, Any]:
    """Return an ECG Observation with one ``valueSampledData`` component per lead.

    ``samples_uv`` is ``(leads, samples)`` in µV; values are quantized to ``resolution_uv`` steps
    (``factor``), so a round trip loses at most half a step.
    """
    if samples_uv.shape[0] != len(leads):
        raise ValueError(f"{samples_uv.shape[0]} signal rows but {len(leads)} lead names")
    quantized = np.rint(samples_uv / resolution_uv)
    return sampled_data_observation(
        (LeadSamples(lead, row, resolution_uv, 0) for lead, row in zip(leads, quantized, strict=True)),
        period_ms=round(1000.0 / sample_rate_hz, 6),
        identifier={"system": identifier[0], "value": identifier[1]} if identifier else None,
        subject={"reference": patient_reference} if patient_reference else None,
        effective=effective,
    )


def ecg_transaction_bundle(
    *, patient: dict[str, Any], observation: dict[str, Any], conditional: bool = True
) -> dict[str, Any]:
    """Return a transaction Bundle with a Patient and its ECG linked by ``urn:uuid``.

    With ``conditional``, both entries carry ``ifNoneExist`` on their first identifier, so a
    resent message creates nothing new.
    """
    patient_url, observation_url = f"urn:uuid:{uuid.uuid4()}", f"urn:uuid:{uuid.uuid4()}"
    observation = {**observation, "subject": {"reference": patient_url}}

    def request(resource_type: str, resource: dict[str, Any]) -> dict[str, Any]:
        entry_request = {"method": "POST", "url": resource_type}
        identifiers = resource.get("identifier") or []
        if conditional and identifiers:
            first = identifiers[0]
            entry_request["ifNoneExist"] = f"identifier={first.get('system', '')}|{first['value']}"
        return entry_request

    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": patient_url, "resource": patient, "request": request("Patient", patient)},
            {"fullUrl": observation_url, "resource": observation, "request": request("Observation", observation)},
        ],
    }
