"""The DICOM ECG reader on files written with pydicom: exact samples, demographics, and each refusal."""

from __future__ import annotations

import base64
import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from cds.core.exceptions import FhirError
from cds.ecg.dicom_ecg import dicom_ecg_read, dicom_ecg_write
from cds.ecg.documents import ecg_document_read
from tests.conftest import LEADS_12, read_sample_record

WHERE = "DocumentReference.content[0].attachment.data"


def values(document) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.stack([c * f + o for c, f, o in zip(document.codes, document.factor_uv, document.origin_uv, strict=True)])


@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian])
def test_it_reads_back_exactly_what_was_written_in_every_native_transfer_syntax(syntax: str | None) -> None:
    samples, _ = read_sample_record(9)  # PTB-XL: whole microvolts, so 1 µV codes are exact
    extra = {"transfer_syntax": syntax} if syntax else {}
    data = dicom_ecg_write(
        samples,
        sample_rate_hz=500,
        leads=LEADS_12,
        patient_sex="F",
        patient_birth_date="19680512",
        acquisition="20240301101500+0100",
        **extra,
    )
    document = dicom_ecg_read(data, expression=WHERE)
    assert document.leads == LEADS_12 and document.sample_rate_hz == 500
    np.testing.assert_array_equal(values(document), samples)
    assert (document.gender, document.birth_date) == ("female", "1968-05-12")
    assert document.effective == "2024-03-01T10:15:00+01:00"
    sop_uid = pydicom.dcmread(io.BytesIO(data)).SOPInstanceUID
    assert document.identifier == {"system": "urn:dicom:uid", "value": f"urn:oid:{sop_uid}"}


def test_it_applies_sensitivity_correction_and_baseline_in_millivolts() -> None:
    samples = np.zeros((2, 2500))
    samples[0, :3] = [100, -200, 300]
    data = dicom_ecg_write(samples, sample_rate_hz=250, leads=("II", "V5"), resolution_uv=1.0)
    ds = pydicom.dcmread(io.BytesIO(data))
    for channel in ds.WaveformSequence[0].ChannelDefinitionSequence:
        channel.ChannelSensitivity, channel.ChannelSensitivityCorrectionFactor = "0.005", "0.5"
        channel.ChannelBaseline = "0.1"
        channel.ChannelSensitivityUnitsSequence[0].CodeValue = "mV"
    buffer = io.BytesIO()
    ds.save_as(buffer)
    document = dicom_ecg_read(buffer.getvalue(), expression=WHERE)
    # code × 0.005 mV × 0.5 + 0.1 mV, in µV: 100 -> 350, -200 -> -400, 300 -> 850, 0 -> 100.
    np.testing.assert_allclose(values(document)[0, :4], [350, -400, 850, 100])
    assert document.leads == ("II", "V5")


def refusal(data: bytes) -> str:
    with pytest.raises(FhirError) as caught:
        dicom_ecg_read(data, expression=WHERE)
    issue = caught.value.issues[0]
    assert issue.expression == (WHERE,)
    return f"{caught.value.status} {issue.code} {issue.diagnostics}"


def ecg(**kwargs: object) -> bytes:
    samples, _ = read_sample_record(9)
    return dicom_ecg_write(samples, sample_rate_hz=500, leads=LEADS_12, **kwargs)  # type: ignore[arg-type]


def test_it_refuses_what_is_not_dicom() -> None:
    assert refusal(b"%PDF-1.7 not an ECG").startswith("400 structure DICOM: the attachment is not a readable DICOM")


def test_it_refuses_a_compressed_transfer_syntax_naming_it() -> None:
    message = refusal(ecg(transfer_syntax=JPEGBaseline8Bit))
    assert (
        message.startswith("422 not-supported") and "TransferSyntaxUID 1.2.840.10008.1.2.4.50 (JPEG Baseline" in message
    )


def test_it_refuses_companded_waveform_samples() -> None:
    message = refusal(ecg(group_WaveformBitsAllocated=8, group_WaveformSampleInterpretation="MB"))
    assert "WaveformSampleInterpretation MB: µ-law companded (compressed) samples are not supported" in message


def test_it_refuses_a_file_whose_channels_are_no_ecg_leads() -> None:
    data = ecg()
    ds = pydicom.dcmread(io.BytesIO(data))
    for channel in ds.WaveformSequence[0].ChannelDefinitionSequence:
        channel.ChannelSourceSequence[0].CodeValue = "2:0"  # not a lead (and the meaning "Lead I" is ignored)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    message = refusal(buffer.getvalue())
    assert message.startswith("422 required DICOM: missing leads") and "2:0" in message


def test_it_refuses_original_groups_with_different_sampling_rates() -> None:
    ds = pydicom.dcmread(io.BytesIO(ecg()))
    second = pydicom.dataset.Dataset()
    second.update(ds.WaveformSequence[0])
    second.SamplingFrequency = "250"
    ds.WaveformSequence.append(second)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    message = refusal(buffer.getvalue())
    assert (
        "inconsistent sampling rate" in message and "WaveformSequence[0] 500 Hz, WaveformSequence[1] 250 Hz" in message
    )


def test_it_ignores_a_derived_median_beat_group_at_another_rate() -> None:
    ds = pydicom.dcmread(io.BytesIO(ecg()))
    median = pydicom.dataset.Dataset()
    median.update(ds.WaveformSequence[0])
    median.WaveformOriginality, median.SamplingFrequency = "DERIVED", "1000"
    ds.WaveformSequence.append(median)
    buffer = io.BytesIO()
    ds.save_as(buffer)
    assert dicom_ecg_read(buffer.getvalue(), expression=WHERE).sample_rate_hz == 500


def test_it_refuses_truncated_waveform_data_and_a_wrong_sop_class() -> None:
    samples, _ = read_sample_record(9)
    short = ecg(group_WaveformData=np.zeros(100, "<i2").tobytes())
    assert "WaveformData has 200 bytes; 12 channels × 5000 samples need 120000" in refusal(short)
    ct = ecg(SOPClassUID="1.2.840.10008.5.1.4.1.1.2")
    assert "SOPClassUID 1.2.840.10008.5.1.4.1.1.2 is not 12-Lead or General ECG" in refusal(ct)


def test_a_damaged_element_is_a_422_naming_the_library_error_not_a_crash() -> None:
    """pydicom converts elements lazily: a malformed one surfaces as a plain exception when read."""
    ds = pydicom.dcmread(io.BytesIO(ecg()))
    ds.WaveformSequence[0].ChannelDefinitionSequence[0].ChannelSensitivity = ["1", "2"]  # VM 2 where 1 is required
    buffer = io.BytesIO()
    ds.save_as(buffer)
    attachment = {"contentType": "application/dicom", "data": base64.b64encode(buffer.getvalue()).decode()}
    with pytest.raises(FhirError) as caught:
        ecg_document_read({"content": [{"attachment": attachment}]})
    issue = caught.value.issues[0]
    assert caught.value.status == 422 and issue.expression == (WHERE,)
    assert issue.diagnostics.startswith("the application/dicom document is damaged or malformed (TypeError")
