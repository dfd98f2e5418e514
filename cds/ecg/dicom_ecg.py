"""Read (and, for tests and the demo, write) DICOM 12-Lead / General ECG Waveform Storage with pydicom.

Supplement 30 stores each multiplex group as interleaved integers; each channel has a source code
(CID 3001 ECG leads: MDC ``2:n`` or the older SCPECG ``5.6.3-9-n``), a sensitivity with its units, a
correction factor and a baseline: value = code × sensitivity × correction + baseline (PS3.3
C.10.9.1.4, the formula pydicom's ``multiplex_array`` applies). Everything refused raises
``FhirError`` naming the DICOM attribute at fault; ``expression`` is the attachment holding it.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    generate_uid,
)

from cds.core.exceptions import FhirError
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.leads import MDC_CODE_BY_LEAD, MICROVOLTS_PER_UNIT

TWELVE_LEAD_ECG = "1.2.840.10008.5.1.4.1.1.9.1.1"
GENERAL_ECG = "1.2.840.10008.5.1.4.1.1.9.1.2"
ECG_SOP_CLASSES = {TWELVE_LEAD_ECG: "12-Lead ECG Waveform Storage", GENERAL_ECG: "General ECG Waveform Storage"}
# Waveforms are never image-compressed: Supplement 30 allows only these (native) transfer syntaxes.
READABLE_TRANSFER_SYNTAXES = {
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
}
_SAMPLE_DTYPES = {
    (8, "SB"): "i1",
    (8, "UB"): "u1",
    (16, "SS"): "i2",
    (16, "US"): "u2",
    (32, "SL"): "i4",
    (32, "UL"): "u4",
}
_COMPANDED = {"MB": "µ-law", "AB": "A-law"}
# CID 3001 term n maps to MDC context-free code 131072 + 256 + n (MDC_ECG_LEAD_I = 2:1 = 131329).
_LEAD_CODE = re.compile(r"^(?:2:|5\.6\.3-9-)(\d+)$")
_LEAD_BY_MDC = {int(code): lead for lead, code in MDC_CODE_BY_LEAD.items()}
_TERM_BY_LEAD = {lead: int(code) - 131328 for lead, code in MDC_CODE_BY_LEAD.items()}
_GENDER = {"M": "male", "F": "female", "O": "other"}


def _fail(status: int, code: str, diagnostics: str, expression: str) -> FhirError:
    return FhirError.single(status, code, f"DICOM: {diagnostics}", expression)


def _lead(channel: Dataset) -> str | None:
    source = (channel.get("ChannelSourceSequence") or [None])[0]
    match = _LEAD_CODE.match(str(getattr(source, "CodeValue", "") or ""))
    return _LEAD_BY_MDC.get(131328 + int(match.group(1))) if match else None


def _microvolts_per_unit(channel: Dataset, *, where: str, expression: str) -> float:
    units = (channel.get("ChannelSensitivityUnitsSequence") or [None])[0]
    unit = str(getattr(units, "CodeValue", "") or "")
    scale = MICROVOLTS_PER_UNIT.get(unit)
    if scale is None:
        raise _fail(
            422, "value", f"{where} ChannelSensitivityUnitsSequence {unit or '(none)'!r} is not uV/mV/V", expression
        )
    return scale


def _fhir_datetime(ds: Dataset) -> str | None:
    """Return the acquisition time as FHIR: a full dateTime only when DICOM gives its UTC offset."""
    value = str(ds.get("AcquisitionDateTime") or "")
    if not value and ds.get("AcquisitionDate"):
        value = str(ds.AcquisitionDate) + str(ds.get("AcquisitionTime") or "")
    match = re.match(r"^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?(?:\.\d+)?([+-]\d{4})?$", value.strip())
    if not match:
        return None
    year, month, day, hour, minute, second, offset = match.groups()
    if hour and offset:  # FHIR requires a zone with a time; without one the local time is unknown
        return f"{year}-{month}-{day}T{hour}:{minute}:{second or '00'}{offset[:3]}:{offset[3:]}"
    return f"{year}-{month}-{day}"


def _birth_date(ds: Dataset) -> str:
    value = str(ds.get("PatientBirthDate") or "")
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}" if re.fullmatch(r"\d{8}", value) else ""


def _read_dataset(data: bytes, expression: str) -> Dataset:
    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except (InvalidDicomError, EOFError, ValueError, KeyError, TypeError, OSError) as exc:
        raise _fail(
            400, "structure", f"the attachment is not a readable DICOM Part 10 file ({exc})", expression
        ) from None
    syntax = getattr(ds.file_meta, "TransferSyntaxUID", None)
    if syntax not in READABLE_TRANSFER_SYNTAXES:
        name = getattr(syntax, "name", "") or "(none)"
        raise _fail(
            422,
            "not-supported",
            f"(0002,0010) TransferSyntaxUID {syntax} ({name}) is not supported; ECG waveforms must use a native "
            "(uncompressed) transfer syntax: Implicit/Explicit VR Little Endian, Deflated or Explicit VR Big Endian",
            expression,
        )
    sop_class = str(ds.get("SOPClassUID") or "")
    if sop_class not in ECG_SOP_CLASSES:
        raise _fail(
            422,
            "not-supported",
            f"(0008,0016) SOPClassUID {sop_class or '(none)'} is not 12-Lead or General ECG Waveform Storage",
            expression,
        )
    if not ds.get("WaveformSequence"):
        raise _fail(422, "required", "(5400,0100) WaveformSequence is missing: the file holds no waveform", expression)
    return ds


def _original_groups(ds: Dataset, expression: str) -> tuple[list[tuple[int, Dataset]], float]:
    """Return the ORIGINAL multiplex groups (a median beat group is DERIVED) and their one sampling rate."""
    groups = list(enumerate(ds.WaveformSequence))
    originals = [(i, g) for i, g in groups if str(g.get("WaveformOriginality", "ORIGINAL")) == "ORIGINAL"] or groups
    rates = {}
    for index, group in originals:
        if group.get("SamplingFrequency") is None:
            raise _fail(422, "required", f"WaveformSequence[{index}] has no (003A,001A) SamplingFrequency", expression)
        rates[index] = float(group.SamplingFrequency)
    if len(set(rates.values())) > 1:
        shown = ", ".join(f"WaveformSequence[{i}] {r:g} Hz" for i, r in rates.items())
        raise _fail(
            422, "value", f"inconsistent sampling rate between the original multiplex groups: {shown}", expression
        )
    return originals, next(iter(rates.values()))


def _group_codes(group: Dataset, index: int, *, big_endian: bool, expression: str) -> np.ndarray:
    """Return one group's raw sample codes as ``(channels, samples)``."""
    where = f"WaveformSequence[{index}]"
    for keyword in ("NumberOfWaveformChannels", "NumberOfWaveformSamples", "WaveformBitsAllocated", "WaveformData"):
        if group.get(keyword) is None:
            raise _fail(422, "required", f"{where} has no {keyword}", expression)
    interpretation = str(group.get("WaveformSampleInterpretation") or "")
    if interpretation in _COMPANDED:
        raise _fail(
            422,
            "not-supported",
            f"{where} (5400,1006) WaveformSampleInterpretation {interpretation}: {_COMPANDED[interpretation]} "
            "companded (compressed) samples are not supported; send linear samples (SS)",
            expression,
        )
    dtype = _SAMPLE_DTYPES.get((int(group.WaveformBitsAllocated), interpretation))
    if dtype is None:
        raise _fail(
            422,
            "not-supported",
            f"{where} has {group.WaveformBitsAllocated}-bit {interpretation or '(no interpretation)'} samples",
            expression,
        )
    channels, samples = int(group.NumberOfWaveformChannels), int(group.NumberOfWaveformSamples)
    definitions = group.get("ChannelDefinitionSequence") or []
    if len(definitions) != channels:
        raise _fail(
            422,
            "value",
            f"{where} declares {channels} channels but ChannelDefinitionSequence has {len(definitions)}",
            expression,
        )
    itemsize = np.dtype(dtype).itemsize
    data = bytes(group.WaveformData)
    if len(data) < channels * samples * itemsize:
        raise _fail(
            422,
            "value",
            f"{where} WaveformData has {len(data)} bytes; {channels} channels × {samples} samples need "
            f"{channels * samples * itemsize}",
            expression,
        )
    order = ">" if big_endian and itemsize > 1 else "<"
    codes = np.frombuffer(data[: channels * samples * itemsize], dtype=order + dtype)
    return codes.reshape(samples, channels).T  # interleaved C1S1 C2S1 ... -> (channels, samples)


def dicom_ecg_read(data: bytes, *, expression: str) -> DocumentWaveform:
    """Decode a DICOM ECG into sample codes per standard lead, with demographics and identity.

    1. Refuse non-DICOM, non-ECG SOP classes and compressed transfer syntaxes.
    2. Take the ORIGINAL multiplex groups (rhythm, not median beats); they must share one rate.
    3. Map channels to leads by source code (never by meaning); other channels are skipped and
       counted; a lead seen twice keeps its first channel. No standard lead at all is refused.
    """
    ds = _read_dataset(data, expression)
    groups, rate = _original_groups(ds, expression)
    big_endian = ds.file_meta.TransferSyntaxUID == ExplicitVRBigEndian
    found: dict[str, tuple[np.ndarray, float, float]] = {}
    skipped: list[str] = []
    for index, group in groups:
        codes = _group_codes(group, index, big_endian=big_endian, expression=expression)
        for number, channel in enumerate(group.ChannelDefinitionSequence):
            lead = _lead(channel)
            if lead is None or lead in found:
                source = (channel.get("ChannelSourceSequence") or [None])[0]
                skipped.append(str(getattr(source, "CodeValue", "") or f"channel {number + 1}"))
                continue
            where = f"WaveformSequence[{index}] channel {number + 1} ({lead})"
            scale = _microvolts_per_unit(channel, where=where, expression=expression)
            sensitivity = float(channel.get("ChannelSensitivity", 1.0)) * float(
                channel.get("ChannelSensitivityCorrectionFactor", 1.0)
            )
            baseline = float(channel.get("ChannelBaseline", 0.0))
            found[lead] = (codes[number].astype(np.int64), sensitivity * scale, baseline * scale)
    if not found:
        raise _fail(
            422,
            "required",
            f"missing leads: no channel's (003A,0208) ChannelSourceSequence is a standard ECG lead (CID 3001); "
            f"got {', '.join(skipped[:12]) or 'no channels'}",
            expression,
        )
    leads = tuple(found)
    sop_instance = str(ds.get("SOPInstanceUID") or "")
    return DocumentWaveform(
        format="dicom",
        leads=leads,
        codes=tuple(found[lead][0] for lead in leads),
        factor_uv=tuple(found[lead][1] for lead in leads),
        origin_uv=tuple(found[lead][2] for lead in leads),
        sample_rate_hz=rate,
        identifier={"system": "urn:dicom:uid", "value": f"urn:oid:{sop_instance}"} if sop_instance else None,
        effective=_fhir_datetime(ds),
        gender=_GENDER.get(str(ds.get("PatientSex") or ""), ""),
        birth_date=_birth_date(ds),
        notes={"skipped_channels": skipped, "sop_class": ECG_SOP_CLASSES[str(ds.SOPClassUID)]},
    )


def dicom_ecg_write(
    samples_uv: np.ndarray,
    *,
    sample_rate_hz: float,
    leads: tuple[str, ...] | list[str],
    resolution_uv: float = 1.0,
    patient_sex: str = "",
    patient_birth_date: str = "",
    acquisition: str = "",
    sop_instance_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    **overrides: Any,
) -> bytes:
    """Return a 12-Lead ECG Waveform Storage file (int16 codes of ``resolution_uv`` µV) for tests and the demo.

    ``overrides`` set top-level or (prefixed ``group_``) multiplex-group attributes, to build bad input.
    """
    codes = np.rint(np.asarray(samples_uv) / resolution_uv).astype("<i2")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(TWELVE_LEAD_ECG)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid or generate_uid())
    meta.TransferSyntaxUID = UID(transfer_syntax)
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = TWELVE_LEAD_ECG, meta.MediaStorageSOPInstanceUID, "ECG"
    ds.PatientSex, ds.PatientBirthDate, ds.AcquisitionDateTime = patient_sex, patient_birth_date, acquisition
    group = Dataset()
    group.WaveformOriginality, group.MultiplexGroupLabel = "ORIGINAL", "RHYTHM"
    group.NumberOfWaveformChannels, group.NumberOfWaveformSamples = len(leads), codes.shape[1]
    group.SamplingFrequency = f"{sample_rate_hz:g}"
    group.WaveformBitsAllocated, group.WaveformSampleInterpretation = 16, "SS"
    group.ChannelDefinitionSequence = [_channel(lead, resolution_uv) for lead in leads]
    # Interleave sample-major; OW words follow the transfer syntax's byte order (pydicom writes bytes as given).
    group.WaveformData = codes.T.astype(">i2" if transfer_syntax == ExplicitVRBigEndian else "<i2").tobytes()
    for key, value in overrides.items():
        setattr(group if key.startswith("group_") else ds, key.removeprefix("group_"), value)
    ds.WaveformSequence = [group]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _channel(lead: str, resolution_uv: float) -> Dataset:
    source, units, channel = Dataset(), Dataset(), Dataset()
    source.CodeValue, source.CodingSchemeDesignator, source.CodeMeaning = (
        f"2:{_TERM_BY_LEAD[lead]}",
        "MDC",
        f"Lead {lead}",
    )
    units.CodeValue, units.CodingSchemeDesignator, units.CodeMeaning = "uV", "UCUM", "microvolt"
    channel.ChannelSourceSequence, channel.ChannelSensitivityUnitsSequence = [source], [units]
    channel.ChannelSensitivity, channel.ChannelSensitivityCorrectionFactor = f"{resolution_uv:g}", "1"
    channel.ChannelBaseline, channel.ChannelSampleSkew, channel.WaveformBitsStored = "0", "0", 16
    return channel
