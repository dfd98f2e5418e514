"""Read (and, for tests and the demo, write) HL7 annotated ECG (aECG, HL7 v3 XML, the FDA format).

Parsed (``cds.ecg.xml_ecg``) with the stdlib ElementTree through ``defusedxml``: aECG needs no XPath or schema
validation, the stdlib parser is fast enough for a few MB, and defusedxml refuses DTDs and entity
expansion (billion laughs, external entities) from a document we did not write. lxml (also
installed) would add speed we do not need and its own hardening settings to get right.
Only the first original ``series`` (rhythm) is read; ``derivedSeries`` (median beats) is ignored.
value = origin + scale × digit (SLIST_PQ); the time sequence's ``increment`` gives the rate.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as StdlibET  # writing only: untrusted input is parsed in cds.ecg.xml_ecg
from typing import Any

import numpy as np

from cds.core.exceptions import FhirError
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.leads import MICROVOLTS_PER_UNIT

NS = "urn:hl7-org:v3"
XSI = "http://www.w3.org/2001/XMLSchema-instance"
_N = f"{{{NS}}}"
# aECG lead codes (MDC reference ids, code system 2.16.840.1.113883.6.24) -> our lead names.
LEAD_BY_AECG_CODE = {
    "MDC_ECG_LEAD_I": "I",
    "MDC_ECG_LEAD_II": "II",
    "MDC_ECG_LEAD_III": "III",
    "MDC_ECG_LEAD_AVR": "aVR",
    "MDC_ECG_LEAD_AVL": "aVL",
    "MDC_ECG_LEAD_AVF": "aVF",
    **{f"MDC_ECG_LEAD_V{n}": f"V{n}" for n in range(1, 7)},
}
_AECG_CODE_BY_LEAD = {lead: code for code, lead in LEAD_BY_AECG_CODE.items()}
_SECONDS_PER_UNIT = {"s": 1.0, "ms": 0.001, "us": 1e-6}
_GENDER = {"M": "male", "F": "female", "UN": "unknown"}


def _fail(status: int, code: str, diagnostics: str, expression: str) -> FhirError:
    return FhirError.single(status, code, f"HL7 aECG: {diagnostics}", expression)


def _ts_to_fhir(value: str, *, date_only: bool = False) -> str | None:
    match = re.match(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(?:\.\d+)?([+-]\d{4})?$", value or "")
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    if hour and offset and not date_only:  # a FHIR time needs its zone; without one keep the date
        return f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{offset[:3]}:{offset[3:]}"
    return f"{year}-{month}-{day}"


def _identifier(root: Any) -> dict[str, str] | None:
    element = root.find(f"{_N}id")
    oid = element.get("root") if element is not None else None
    if not oid:
        return None
    extension = element.get("extension")
    if extension:
        return {"system": f"urn:oid:{oid}", "value": extension}
    scheme = "uuid" if re.fullmatch(r"[0-9a-fA-F-]{36}", oid) else "oid"
    return {"system": "urn:ietf:rfc:3986", "value": f"urn:{scheme}:{oid.lower() if scheme == 'uuid' else oid}"}


def _quantity(element: Any, name: str, scales: dict[str, float], *, where: str, expression: str) -> float:
    node = element.find(f"{_N}{name}")
    if node is None:
        raise _fail(422, "required", f"{where} has no {name}", expression)
    unit = node.get("unit") or ""
    if unit not in scales:
        raise _fail(
            422, "value", f"{where} {name} unit {unit or '(none)'!r} is not one of {', '.join(scales)}", expression
        )
    try:
        return float(node.get("value", "")) * scales[unit]
    except ValueError:
        raise _fail(422, "value", f"{where} {name} value {node.get('value')!r} is not a number", expression) from None


def aecg_read(root: Any, *, expression: str) -> DocumentWaveform:
    """Decode a parsed ``AnnotatedECG`` element into codes per standard lead with demographics and identity."""
    series = root.find(f"{_N}component/{_N}series")
    if series is None:
        raise _fail(422, "required", "AnnotatedECG has no component/series (no waveform)", expression)
    sequences = series.findall(f"{_N}component/{_N}sequenceSet/{_N}component/{_N}sequence")
    rate = None
    found: dict[str, tuple[np.ndarray, float, float]] = {}
    skipped = []
    for number, sequence in enumerate(sequences):
        code = sequence.find(f"{_N}code")
        name = code.get("code", "") if code is not None else ""
        value = sequence.find(f"{_N}value")
        where = f"sequence {number + 1} ({name or 'no code'})"
        if value is None:
            raise _fail(422, "required", f"{where} has no value", expression)
        if name.startswith("TIME_"):
            increment = _quantity(value, "increment", _SECONDS_PER_UNIT, where=where, expression=expression)
            if not increment > 0:
                raise _fail(422, "value", f"{where} increment must be > 0", expression)
            if rate is not None and abs(rate - 1 / increment) > 1e-6:
                raise _fail(
                    422,
                    "value",
                    f"inconsistent sampling rate: {where} has {1 / increment:g} Hz, another {rate:g} Hz",
                    expression,
                )
            rate = 1 / increment
            continue
        lead = LEAD_BY_AECG_CODE.get(name)
        if lead is None or lead in found:
            skipped.append(name or where)
            continue
        origin = _quantity(value, "origin", MICROVOLTS_PER_UNIT, where=where, expression=expression)
        scale = _quantity(value, "scale", MICROVOLTS_PER_UNIT, where=where, expression=expression)
        digits = value.find(f"{_N}digits")
        text = (digits.text or "") if digits is not None else ""
        try:
            codes = np.array(text.split(), dtype=np.int64)
        except ValueError:
            raise _fail(422, "value", f"{where} digits are not whitespace-separated integers", expression) from None
        if codes.size == 0:
            raise _fail(422, "required", f"{where} has no digits", expression)
        found[lead] = (codes, scale, origin)
    if rate is None:
        raise _fail(
            422, "required", "the series has no TIME_ABSOLUTE/TIME_RELATIVE sequence with an increment", expression
        )
    if not found:
        raise _fail(
            422,
            "required",
            f"missing leads: no sequence is coded MDC_ECG_LEAD_*; got {', '.join(skipped[:12]) or 'none'}",
            expression,
        )
    leads = tuple(found)
    effective = root.find(f"{_N}effectiveTime/{_N}low")
    person = root.find(f".//{_N}subjectDemographicPerson")
    gender = person.find(f"{_N}administrativeGenderCode") if person is not None else None
    birth = person.find(f"{_N}birthTime") if person is not None else None
    return DocumentWaveform(
        format="hl7-aecg",
        leads=leads,
        codes=tuple(found[lead][0] for lead in leads),
        factor_uv=tuple(found[lead][1] for lead in leads),
        origin_uv=tuple(found[lead][2] for lead in leads),
        sample_rate_hz=rate,
        identifier=_identifier(root),
        effective=_ts_to_fhir(effective.get("value", "")) if effective is not None else None,
        gender=_GENDER.get(gender.get("code", "") if gender is not None else "", ""),
        birth_date=(_ts_to_fhir(birth.get("value", ""), date_only=True) or "") if birth is not None else "",
        notes={"skipped_sequences": skipped},
    )


def aecg_write(
    samples_uv: np.ndarray,
    *,
    sample_rate_hz: float,
    leads: tuple[str, ...] | list[str],
    resolution_uv: float = 1.0,
    document_id: str = "2.25.1",
    effective: str = "",
    gender: str = "",
    birth_time: str = "",
) -> bytes:
    """Return an aECG document (digits in ``resolution_uv`` µV steps) for tests and the demo."""
    StdlibET.register_namespace("", NS)
    StdlibET.register_namespace("xsi", XSI)

    def sub(parent: Any, tag: str, **attrs: str) -> Any:
        return StdlibET.SubElement(parent, f"{_N}{tag}", attrs)

    root = StdlibET.Element(f"{_N}AnnotatedECG")
    sub(root, "id", root=document_id)
    sub(root, "code", code="93000", codeSystem="2.16.840.1.113883.6.12")
    if effective:
        sub(sub(root, "effectiveTime"), "low", value=effective)
    person = sub(
        sub(
            sub(
                sub(sub(sub(sub(root, "componentOf"), "timepointEvent"), "componentOf"), "subjectAssignment"), "subject"
            ),
            "trialSubject",
        ),
        "subjectDemographicPerson",
    )
    if gender:
        sub(person, "administrativeGenderCode", code=gender, codeSystem="2.16.840.1.113883.5.1")
    if birth_time:
        sub(person, "birthTime", value=birth_time)
    series = sub(sub(root, "component"), "series")
    sub(series, "code", code="RHYTHM", codeSystem="2.16.840.1.113883.5.4")
    sequence_set = sub(sub(series, "component"), "sequenceSet")
    time = sub(sub(sequence_set, "component"), "sequence")
    sub(time, "code", code="TIME_RELATIVE", codeSystem="2.16.840.1.113883.5.4")
    time_value = sub(time, "value", **{f"{{{XSI}}}type": "GLIST_PQ"})
    sub(time_value, "head", value="0", unit="s")
    sub(time_value, "increment", value=repr(1.0 / sample_rate_hz), unit="s")
    codes = np.rint(np.asarray(samples_uv) / resolution_uv).astype(np.int64)
    for lead, row in zip(leads, codes, strict=True):
        sequence = sub(sub(sequence_set, "component"), "sequence")
        sub(sequence, "code", code=_AECG_CODE_BY_LEAD[lead], codeSystem="2.16.840.1.113883.6.24")
        value = sub(sequence, "value", **{f"{{{XSI}}}type": "SLIST_PQ"})
        sub(value, "origin", value="0", unit="uV")
        sub(value, "scale", value=f"{resolution_uv:g}", unit="uV")
        sub(value, "digits").text = " ".join(map(str, row.tolist()))
    return bytes(StdlibET.tostring(root, xml_declaration=True, encoding="utf-8"))
