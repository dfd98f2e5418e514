"""The 71 PTB-XL SCP-ECG statements clinicians assign as diagnostic labels.

The table lives in ``inference.clinical.scp`` (the lowest layer that reads it: the decoder-text
checker uses it too), so exported labels and the models speak the same codes.
"""

from __future__ import annotations

from typing import Any

from inference.clinical.scp import SCP_CODES, SCP_STATEMENTS, SCP_STATEMENTS_CSV, SNOMED_OF_SCP, ScpStatement

__all__ = ["SCP_CODES", "SCP_STATEMENTS", "SCP_STATEMENTS_CSV", "ScpStatement", "scp_concept"]

SCP_SYSTEM = "urn:ecg-cds:CodeSystem:ptbxl-scp"
SNOMED_SYSTEM = "http://snomed.info/sct"
# The SNOMED CT concept an EHR expects for each label a clinician signs: the measured-statement
# table (SNOMED_OF_SCP) where it names the same concept, and otherwise the PhysioNet/CinC
# Challenge 2020/2021 mapping (dx_mapping_scored/unscored.csv) where its diagnosis is the SCP
# statement itself. Where the Challenge is more precise (complete vs any bundle branch block,
# prolonged PR vs first-degree block) its concept wins. Labels without an equal concept (NORM,
# the localized infarcts and ischaemia, the non-specific changes) carry the SCP code alone.
SNOMED_OF_SCP_LABEL = SNOMED_OF_SCP | {
    "CRBBB": "713427006",
    "CLBBB": "733534002",
    "LPR": "164947007",
    "LVH": "164873001",
    "RVH": "89792004",
    "LAFB": "445118002",
    "LPFB": "445211001",
    "WPW": "74390002",
    "2AVB": "195042002",
    "3AVB": "27885002",
    "AMI": "54329005",
    "PSVT": "67198005",
    "SVTAC": "426761007",
    "ABQRS": "164951009",
    "INVT": "59931005",
    "TAB_": "164934002",
    "LAO/LAE": "67741000119109",
}


def scp_concept(code: str) -> dict[str, Any]:
    """Return the CodeableConcept of a signed SCP label: SNOMED CT first (when one applies), the SCP code second."""
    description = SCP_STATEMENTS[code].description
    codings = [{"system": SNOMED_SYSTEM, "code": SNOMED_OF_SCP_LABEL[code]}] if code in SNOMED_OF_SCP_LABEL else []
    codings.append({"system": SCP_SYSTEM, "code": code, "display": description})
    return {"coding": codings, "text": description}
