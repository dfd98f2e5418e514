"""The HL7 aECG reader on documents written here: exact samples, demographics, and each refusal."""

from __future__ import annotations

import numpy as np
import pytest

from cds.core.exceptions import FhirError
from cds.ecg.aecg import aecg_write
from cds.ecg.xml_ecg import xml_ecg_read
from tests.conftest import LEADS_12, read_sample_record

WHERE = "DocumentReference.content[0].attachment.data"


def values(document) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([c * f + o for c, f, o in zip(document.codes, document.factor_uv, document.origin_uv, strict=True)])


def aecg(**kwargs: object) -> bytes:
    samples, _ = read_sample_record(9)
    return aecg_write(samples, sample_rate_hz=500, leads=LEADS_12, **kwargs)  # type: ignore[arg-type]


def test_it_reads_back_exactly_what_was_written_with_identity_and_demographics() -> None:
    samples, _ = read_sample_record(9)
    document = xml_ecg_read(
        aecg(
            document_id="61d1a24f-b47e-41aa-ae95-f8ac302f4eeb",
            effective="20240301100000+0000",
            gender="F",
            birth_time="19680512",
        ),
        expression=WHERE,
    )
    assert document.format == "hl7-aecg" and document.leads == LEADS_12 and document.sample_rate_hz == 500
    np.testing.assert_array_equal(values(document), samples)
    assert document.identifier == {
        "system": "urn:ietf:rfc:3986",
        "value": "urn:uuid:61d1a24f-b47e-41aa-ae95-f8ac302f4eeb",
    }
    assert (document.effective, document.gender, document.birth_date) == (
        "2024-03-01T10:00:00+00:00",
        "female",
        "1968-05-12",
    )


def test_it_scales_millivolt_digits_with_an_origin() -> None:
    data = aecg(resolution_uv=5)
    data = data.replace(b'<origin value="0" unit="uV" />', b'<origin value="0.01" unit="mV" />')
    data = data.replace(b'<scale value="5" unit="uV" />', b'<scale value="0.005" unit="mV" />')
    document = xml_ecg_read(data, expression=WHERE)
    samples, _ = read_sample_record(9)
    np.testing.assert_allclose(values(document), np.rint(samples / 5) * 5 + 10, atol=1e-9)


def refusal(data: bytes) -> str:
    with pytest.raises(FhirError) as caught:
        xml_ecg_read(data, expression=WHERE)
    issue = caught.value.issues[0]
    assert issue.expression == (WHERE,)
    return f"{caught.value.status} {issue.code} {issue.diagnostics}"


def test_it_refuses_entity_expansion_and_dtds() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY b "bbbbbbbb"><!ENTITY c "&b;&b;&b;&b;">]><a>&c;</a>'
    assert refusal(bomb).startswith("400 security XML ECG: refused")


def test_it_refuses_broken_xml_and_other_xml_documents() -> None:
    assert refusal(b"<AnnotatedECG").startswith("400 structure XML ECG: not well-formed")
    assert "root element 'restingecgdata' is not a format we read" in refusal(b"<restingecgdata/>")


def test_it_refuses_missing_leads_bad_digits_and_no_time_sequence() -> None:
    no_leads = aecg().replace(b"MDC_ECG_LEAD_", b"OTHER_")
    assert "missing leads: no sequence is coded MDC_ECG_LEAD_*" in refusal(no_leads)
    bad_digits = aecg().replace(b"<digits>", b"<digits>1.5 ", 1)
    assert "sequence 2 (MDC_ECG_LEAD_I) digits are not whitespace-separated integers" in refusal(bad_digits)
    no_time = aecg().replace(b"TIME_RELATIVE", b"SOMETHING")
    assert "no TIME_ABSOLUTE/TIME_RELATIVE sequence" in refusal(no_time)
    volts_per_second = aecg().replace(b'<scale value="1" unit="uV" />', b'<scale value="1" unit="V/s" />', 1)
    assert "scale unit 'V/s' is not one of" in refusal(volts_per_second)
