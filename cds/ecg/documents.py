"""Turn an ECG document attached to a FHIR DocumentReference into the ECG Observation we ingest.

The document's waveform becomes an ordinary ECG Observation (one SampledData component per lead,
MDC lead codes) carrying the document's integer codes with its ``factor`` and ``origin``, so it then
takes exactly the SampledData path: same decoder, same limits, same stored samples and analysis.
Attachments must be inline (``data``): the service never fetches a ``url``.
"""

from __future__ import annotations

import base64
import binascii
import struct
from collections.abc import Callable
from typing import Any

from pydicom.errors import BytesLengthException

from cds.core.exceptions import FhirError
from cds.ecg.dicom_ecg import dicom_ecg_read
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.encoding import LeadSamples, sampled_data_observation
from cds.ecg.xml_ecg import xml_ecg_read

Reader = Callable[..., DocumentWaveform]
# Attachment content type -> decoder. Documented in docs/fhir.md "Accepted ECG formats".
# XML formats are told apart by their root element, since senders label them all text/xml or application/xml.
READERS: dict[str, Reader] = {
    "application/dicom": dicom_ecg_read,
    "application/xml": xml_ecg_read,
    "text/xml": xml_ecg_read,
    "application/hl7-v3+xml": xml_ecg_read,
}
_ATTACHMENT = "DocumentReference.content[0].attachment"


def _attachment(content: dict[str, Any]) -> tuple[str, bytes]:
    items = content.get("content") or []
    attachment = (items[0] or {}).get("attachment") if items and isinstance(items[0], dict) else None
    if not isinstance(attachment, dict):
        raise FhirError.single(422, "required", "DocumentReference needs content[0].attachment", _ATTACHMENT)
    content_type = str(attachment.get("contentType") or "").split(";")[0].strip().lower()
    if content_type not in READERS:
        raise FhirError.single(
            422,
            "not-supported",
            f"attachment contentType {content_type or '(none)'!r} is not an ECG format we read; "
            f"accepted: {', '.join(sorted(READERS))}",
            f"{_ATTACHMENT}.contentType",
        )
    data = attachment.get("data")
    if not isinstance(data, str) or not data:
        where = "a url (the service never fetches documents)" if attachment.get("url") else "no data"
        raise FhirError.single(
            422, "required", f"the attachment has {where}; send the document inline as data", f"{_ATTACHMENT}.data"
        )
    try:
        return content_type, base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise FhirError.single(400, "value", "attachment data is not valid base64", f"{_ATTACHMENT}.data") from None


# What the readers' libraries raise on a damaged document when a value is first used (pydicom
# parses elements lazily, so a corrupt element surfaces only when read; numpy/base64 on bad counts).
_DAMAGED = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    NotImplementedError,
    OverflowError,
    EOFError,
    struct.error,
    BytesLengthException,
)


def ecg_document_read(content: dict[str, Any]) -> DocumentWaveform:
    """Decode the ECG document a DocumentReference carries; raise FhirError naming what is wrong.

    Readers name the problems they check for; anything else a damaged document makes a library
    raise is answered 422 with the library's message, never a 500.
    """
    content_type, data = _attachment(content)
    try:
        return READERS[content_type](data, expression=f"{_ATTACHMENT}.data")
    except _DAMAGED as exc:
        raise FhirError.single(
            422,
            "value",
            f"the {content_type} document is damaged or malformed ({type(exc).__name__}: {str(exc)[:200]})",
            f"{_ATTACHMENT}.data",
        ) from None


def document_observation(document: DocumentWaveform, *, subject: dict[str, Any] | None) -> dict[str, Any]:
    """Return the ECG Observation (SampledData, MDC lead codes) holding exactly the document's samples."""
    return sampled_data_observation(
        (
            LeadSamples(lead, codes, factor, origin)
            for lead, codes, factor, origin in zip(
                document.leads, document.codes, document.factor_uv, document.origin_uv, strict=True
            )
        ),
        period_ms=1000.0 / document.sample_rate_hz,
        identifier=dict(document.identifier) if document.identifier else None,
        subject=subject,
        effective=document.effective,
    )
