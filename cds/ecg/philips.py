"""Read Philips (Sierra) resting ECG XML with ``sierraecg`` (MIT; numpy + defusedxml).

Philips carts usually store waveforms XLI-compressed (LZW + delta coding, limb leads as residuals),
which sierraecg decodes; it returns int16 codes per lead but not their scale, so the amplitude
resolution (``signalresolution``, µV per code), sex, birth date and acquisition date are read here
from the element tree ``cds.ecg.xml_ecg`` parsed (defusedxml). sierraecg parses the bytes again
(defusedxml minidom): the documents are small and this keeps its decoder unchanged.
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
import sierraecg

from cds.core.exceptions import FhirError
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.leads import STANDARD_LEADS

NS = "http://www3.medical.philips.com"
_N = f"{{{NS}}}"
_GENDER = {"MALE": "male", "FEMALE": "female"}
_SIGNAL = f"{_N}dataacquisition/{_N}signalcharacteristics"
_PATIENT = f"{_N}patient/{_N}generalpatientdata"


def _fail(status: int, code: str, diagnostics: str, expression: str) -> FhirError:
    return FhirError.single(status, code, f"Philips XML: {diagnostics}", expression)


def _text(root: Any, path: str) -> str:
    found = root.find(path)
    return (found.text or "").strip() if found is not None else ""


def philips_read(data: bytes, root: Any, *, expression: str) -> DocumentWaveform:
    """Decode a Philips ``restingecgdata`` document: 12 leads of int16 codes × ``signalresolution`` µV."""
    try:
        resolution = float(_text(root, f"{_SIGNAL}/{_N}signalresolution"))
    except ValueError:
        raise _fail(
            422, "required", "signalcharacteristics/signalresolution is missing or not a number", expression
        ) from None
    try:
        # minidom.parse takes a file object as well as a path (sierraecg annotates only the path).
        parsed = sierraecg.read_file(io.BytesIO(data))  # type: ignore[arg-type]
    except (
        sierraecg.UnsupportedXmlFileError,
        sierraecg.MissingXmlElementError,
        sierraecg.MissingXmlAttributeError,
    ) as exc:
        raise _fail(422, "not-supported", str(exc), expression) from None
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        # A damaged XLI stream surfaces as one of these from the decoder.
        raise _fail(
            422, "value", f"the waveform could not be decoded ({type(exc).__name__}: {exc})", expression
        ) from None
    found = {lead.label: lead for lead in parsed.leads if lead.label in STANDARD_LEADS}
    if not found:
        raise _fail(422, "required", "missing leads: no parsed waveform is labelled with a standard lead", expression)
    rates = {lead.sampling_freq for lead in found.values()}
    if len(rates) != 1:
        raise _fail(422, "value", f"inconsistent sampling rate between leads: {sorted(rates)} Hz", expression)
    leads = tuple(lead for lead in STANDARD_LEADS if lead in found)
    acquired = root.find(f"{_N}dataacquisition")
    date = acquired.get("date", "") if acquired is not None else ""
    birth = _text(root, f"{_PATIENT}/{_N}dateofbirth")
    return DocumentWaveform(
        format="philips",
        leads=leads,
        codes=tuple(np.asarray(found[lead].samples, dtype=np.int64) for lead in leads),
        factor_uv=tuple(resolution for _ in leads),
        origin_uv=tuple(0.0 for _ in leads),
        sample_rate_hz=float(rates.pop()),
        effective=date if re.fullmatch(r"\d{4}-\d{2}-\d{2}", date) else None,
        gender=_GENDER.get(_text(root, f"{_PATIENT}/{_N}sex").upper(), ""),
        birth_date=birth if re.fullmatch(r"\d{4}-\d{2}-\d{2}", birth) else "",
        notes={"document_version": parsed.doc_ver},
    )
