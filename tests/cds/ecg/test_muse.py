"""The GE MUSE XML reader on documents written here: stored leads exact, limb leads derived, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from cds.core.exceptions import FhirError
from cds.ecg.muse import muse_write
from cds.ecg.xml_ecg import xml_ecg_read
from tests.conftest import LEADS_12, read_sample_record

WHERE = "DocumentReference.content[0].attachment.data"
MUSE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")  # what MUSE stores


def values(document) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([c * f + o for c, f, o in zip(document.codes, document.factor_uv, document.origin_uv, strict=True)])


def test_it_reads_the_eight_stored_leads_exactly_and_derives_the_limb_leads() -> None:
    samples, _ = read_sample_record(9)
    stored = samples[[LEADS_12.index(lead) for lead in MUSE_LEADS]]
    data = muse_write(
        stored,
        sample_rate_hz=500,
        leads=MUSE_LEADS,
        units_per_bit=4.88,
        gender="FEMALE",
        date_of_birth="05-12-1968",
        acquisition_date="03-01-2024",
    )
    assert b"<!DOCTYPE RestingECG" in data  # as MUSE exports it: the parser must let the DOCTYPE through
    document = xml_ecg_read(data, expression=WHERE)
    assert document.format == "ge-muse" and document.leads == LEADS_12 and document.sample_rate_hz == 500
    decoded = dict(zip(document.leads, values(document), strict=True))
    quantized = np.rint(stored / 4.88) * 4.88
    for lead, row in zip(MUSE_LEADS, quantized, strict=True):
        np.testing.assert_allclose(decoded[lead], row, atol=1e-9)
    one, two = decoded["I"], decoded["II"]
    np.testing.assert_allclose(decoded["III"], two - one, atol=1e-9)
    np.testing.assert_allclose(decoded["aVR"], -(one + two) / 2, atol=1e-9)
    np.testing.assert_allclose(decoded["aVL"], one - two / 2, atol=1e-9)
    np.testing.assert_allclose(decoded["aVF"], two - one / 2, atol=1e-9)
    assert document.notes["derived_leads"] == ["III", "aVR", "aVL", "aVF"]
    assert (document.effective, document.gender, document.birth_date) == ("2024-03-01", "female", "1968-05-12")


def refusal(data: bytes) -> str:
    with pytest.raises(FhirError) as caught:
        xml_ecg_read(data, expression=WHERE)
    return f"{caught.value.status} {caught.value.issues[0].diagnostics}"


def test_it_refuses_no_rhythm_waveform_unknown_leads_and_short_data() -> None:
    samples, _ = read_sample_record(9)
    data = muse_write(samples[:2], sample_rate_hz=500, leads=("I", "II"))
    assert "no Waveform with WaveformType Rhythm" in refusal(data.replace(b"Rhythm", b"Median"))
    assert "missing leads" in refusal(
        data.replace(b"<LeadID>I</LeadID>", b"<LeadID>X</LeadID>").replace(
            b"<LeadID>II</LeadID>", b"<LeadID>Y</LeadID>"
        )
    )
    short = data.replace(b"<LeadSampleCountTotal>5000<", b"<LeadSampleCountTotal>9000<", 1)
    assert "LeadData 1 (I) has 10000 bytes for 9000 samples" in refusal(short)


def test_it_refuses_entity_declarations_even_with_a_doctype_allowed() -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE RestingECG [<!ENTITY b "bbbb">]><RestingECG>&b;</RestingECG>'
    assert refusal(bomb).startswith("400 XML ECG: refused (EntitiesForbidden")
