"""Parse an XML ECG document safely and hand it to the reader of its format (by root element).

Senders label every XML ECG ``text/xml`` or ``application/xml``, so the root element decides:
HL7 aECG ``AnnotatedECG`` (``cds.ecg.aecg``), GE MUSE ``RestingECG`` (``cds.ecg.muse``) or Philips
``restingecgdata`` (``cds.ecg.philips``).
``defusedxml`` wraps the stdlib parser: entity declarations and external references are refused.
"""

from __future__ import annotations

import xml.etree.ElementTree as StdlibET

from defusedxml import ElementTree as SafeET
from defusedxml.common import DefusedXmlException

from cds.core.exceptions import FhirError
from cds.ecg.aecg import NS as AECG_NS
from cds.ecg.aecg import aecg_read
from cds.ecg.document_types import DocumentWaveform
from cds.ecg.muse import muse_read
from cds.ecg.philips import NS as PHILIPS_NS
from cds.ecg.philips import philips_read


def xml_ecg_read(data: bytes, *, expression: str) -> DocumentWaveform:
    """Parse an XML ECG safely and decode it by its root element (aECG, MUSE, Philips)."""
    try:
        # MUSE exports carry a DOCTYPE naming restecg.dtd, so a DTD is allowed; entity declarations
        # and external references (what the attacks need) are still refused, and nothing is fetched.
        root = SafeET.fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise FhirError.single(
            400,
            "security",
            f"XML ECG: refused ({type(exc).__name__}: entity declarations and external references are not accepted)",
            expression,
        ) from None
    except StdlibET.ParseError as exc:
        raise FhirError.single(400, "structure", f"XML ECG: not well-formed XML ({exc})", expression) from None
    if root.tag == f"{{{AECG_NS}}}AnnotatedECG":
        return aecg_read(root, expression=expression)
    if root.tag == "RestingECG":
        return muse_read(root, expression=expression)
    if root.tag == f"{{{PHILIPS_NS}}}restingecgdata":
        return philips_read(data, root, expression=expression)
    raise FhirError.single(
        422,
        "not-supported",
        f"XML ECG: root element {root.tag!r} is not a format we read; accepted: HL7 aECG ({{{AECG_NS}}}AnnotatedECG), GE MUSE (RestingECG), Philips ({{{PHILIPS_NS}}}restingecgdata)",
        expression,
    )
