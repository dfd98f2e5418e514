"""Read (and, for tests and the demo, write) GE MUSE resting ECG XML (``RestingECG``).

The rhythm ``Waveform`` holds one ``LeadData`` per stored lead: base64 little-endian int16
samples (``WaveFormData``) × ``LeadAmplitudeUnitsPerBit`` (µV). MUSE stores 8 leads (I, II, V1–V6)
and derives the limb leads; we derive III, aVR, aVL and aVF the same way (Einthoven/Goldberger)
when they are absent, as integer codes at half the step so nothing is rounded. The element tree
comes from ``cds.ecg.aecg.xml_ecg_read`` (defusedxml), which dispatches on the root element.
"""

from __future__ import annotations

import base64
import binascii
import re
import xml.etree.ElementTree as StdlibET  # writing only
from typing import Any

import numpy as np

from cds.core.exceptions import FhirError
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.leads import STANDARD_LEADS

_UNITS_UV = {"MICROVOLTS": 1.0, "MILLIVOLTS": 1000.0}
_GENDER = {"MALE": "male", "FEMALE": "female"}


def _fail(status: int, code: str, diagnostics: str, expression: str) -> FhirError:
    return FhirError.single(status, code, f"GE MUSE XML: {diagnostics}", expression)


def _text(element: Any, path: str) -> str:
    found = element.find(path)
    return (found.text or "").strip() if found is not None else ""


def _date(value: str) -> str:
    match = re.fullmatch(r"(\d{2})-(\d{2})-(\d{4})", value)  # MUSE writes MM-DD-YYYY
    return f"{match.group(3)}-{match.group(1)}-{match.group(2)}" if match else ""


def _lead(lead_data: Any, where: str, expression: str) -> tuple[str, np.ndarray, float]:
    lead = _text(lead_data, "LeadID")
    lead = {"AVR": "aVR", "AVL": "aVL", "AVF": "aVF"}.get(lead.upper(), lead)
    try:
        raw = base64.b64decode(_text(lead_data, "WaveFormData"), validate=False)
    except (binascii.Error, ValueError):
        raise _fail(422, "value", f"{where} ({lead}) WaveFormData is not base64", expression) from None
    count = int(_text(lead_data, "LeadSampleCountTotal") or len(raw) // 2)
    if len(raw) < 2 * count or count == 0:
        raise _fail(422, "value", f"{where} ({lead}) has {len(raw)} bytes for {count} samples of 2 bytes", expression)
    units = _text(lead_data, "LeadAmplitudeUnits").upper() or "MICROVOLTS"
    if units not in _UNITS_UV:
        raise _fail(
            422, "value", f"{where} ({lead}) LeadAmplitudeUnits {units!r} is not MICROVOLTS/MILLIVOLTS", expression
        )
    try:
        per_bit = float(_text(lead_data, "LeadAmplitudeUnitsPerBit") or "1")
    except ValueError:
        raise _fail(422, "value", f"{where} ({lead}) LeadAmplitudeUnitsPerBit is not a number", expression) from None
    return lead, np.frombuffer(raw[: 2 * count], dtype="<i2").astype(np.int64), per_bit * _UNITS_UV[units]


def muse_read(root: Any, *, expression: str) -> DocumentWaveform:
    """Decode a parsed ``RestingECG`` element: its rhythm waveform, demographics and acquisition date."""
    rhythm = [w for w in root.findall("Waveform") if _text(w, "WaveformType").lower() == "rhythm"]
    if not rhythm:
        raise _fail(422, "required", "no Waveform with WaveformType Rhythm", expression)
    waveform = rhythm[0]
    try:
        rate = float(_text(waveform, "SampleBase")) * 10 ** int(_text(waveform, "SampleExponent") or "0")
    except ValueError:
        raise _fail(422, "required", "the rhythm Waveform has no numeric SampleBase", expression) from None
    found: dict[str, tuple[np.ndarray, float]] = {}
    for number, lead_data in enumerate(waveform.findall("LeadData")):
        lead, codes, factor = _lead(lead_data, f"LeadData {number + 1}", expression)
        if lead in STANDARD_LEADS and lead not in found:
            found[lead] = (codes, factor)
    if not found:
        raise _fail(422, "required", "missing leads: no LeadData has a LeadID among the 12 standard leads", expression)
    derived = _derive_limb_leads(found)
    leads = tuple(lead for lead in STANDARD_LEADS if lead in found)
    return DocumentWaveform(
        format="ge-muse",
        leads=leads,
        codes=tuple(found[lead][0] for lead in leads),
        factor_uv=tuple(found[lead][1] for lead in leads),
        origin_uv=tuple(0.0 for _ in leads),
        sample_rate_hz=rate,
        effective=_date(_text(root, "TestDemographics/AcquisitionDate")) or None,
        gender=_GENDER.get(_text(root, "PatientDemographics/Gender").upper(), ""),
        birth_date=_date(_text(root, "PatientDemographics/DateofBirth")),
        notes={"derived_leads": derived},
    )


def _derive_limb_leads(found: dict[str, tuple[np.ndarray, float]]) -> list[str]:
    """Add III, aVR, aVL, aVF from I and II when missing (same step in I and II); return those added."""
    if (
        "I" not in found
        or "II" not in found
        or found["I"][1] != found["II"][1]
        or found["I"][0].size != found["II"][0].size
    ):
        return []
    one, two, step = found["I"][0], found["II"][0], found["I"][1]
    formulas = {
        "III": (two - one, step),  # III = II − I
        "aVR": (-(one + two), step / 2),  # aVR = −(I + II)/2
        "aVL": (2 * one - two, step / 2),  # aVL = I − II/2
        "aVF": (2 * two - one, step / 2),  # aVF = II − I/2
    }
    added = [lead for lead in formulas if lead not in found]
    for lead in added:
        found[lead] = formulas[lead]
    return added


def muse_write(
    samples_uv: np.ndarray,
    *,
    sample_rate_hz: int,
    leads: tuple[str, ...] | list[str],
    units_per_bit: float = 1.0,
    gender: str = "",
    date_of_birth: str = "",
    acquisition_date: str = "",
) -> bytes:
    """Return a MUSE-style RestingECG document (int16 codes of ``units_per_bit`` µV) for tests and the demo."""
    root = StdlibET.Element("RestingECG")
    demographics = StdlibET.SubElement(root, "PatientDemographics")
    StdlibET.SubElement(demographics, "Gender").text = gender
    StdlibET.SubElement(demographics, "DateofBirth").text = date_of_birth
    StdlibET.SubElement(StdlibET.SubElement(root, "TestDemographics"), "AcquisitionDate").text = acquisition_date
    waveform = StdlibET.SubElement(root, "Waveform")
    StdlibET.SubElement(waveform, "WaveformType").text = "Rhythm"
    StdlibET.SubElement(waveform, "SampleBase").text = str(sample_rate_hz)
    StdlibET.SubElement(waveform, "SampleExponent").text = "0"
    codes = np.rint(np.asarray(samples_uv) / units_per_bit).astype("<i2")
    for lead, row in zip(leads, codes, strict=True):
        lead_data = StdlibET.SubElement(waveform, "LeadData")
        StdlibET.SubElement(lead_data, "LeadSampleCountTotal").text = str(row.size)
        StdlibET.SubElement(lead_data, "LeadAmplitudeUnitsPerBit").text = f"{units_per_bit:g}"
        StdlibET.SubElement(lead_data, "LeadAmplitudeUnits").text = "MICROVOLTS"
        StdlibET.SubElement(lead_data, "LeadID").text = lead
        StdlibET.SubElement(lead_data, "WaveFormData").text = base64.b64encode(row.tobytes()).decode()
    declaration = b'<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE RestingECG SYSTEM "restecg.dtd">\n'
    return declaration + StdlibET.tostring(root, encoding="utf-8", xml_declaration=False)
