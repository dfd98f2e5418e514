"""What a decoded ECG document (DICOM, HL7 aECG, ...) yields, before it becomes an ECG Observation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class DocumentWaveform:
    """Integer sample codes per lead and how they map to microvolts: value = origin_uv + factor_uv × code.

    Formats store integers plus a per-channel scale and offset, exactly what R4 SampledData holds
    (``origin``, ``factor``, ``data``), so the codes pass to the Observation unchanged and the
    SampledData decoder computes the same microvolts the document means.
    """

    format: str
    leads: tuple[str, ...]
    codes: tuple[np.ndarray, ...]
    factor_uv: tuple[float, ...]
    origin_uv: tuple[float, ...]
    sample_rate_hz: float
    # The document's own identity (e.g. DICOM SOP Instance UID) as a FHIR Identifier, if it has one.
    identifier: dict[str, str] | None = None
    effective: str | None = None  # FHIR date or dateTime of the acquisition
    gender: str = ""  # FHIR administrative gender from the document
    birth_date: str = ""  # FHIR date from the document
    notes: dict[str, Any] = field(default_factory=dict)
