"""ECG vocabulary: lead codes (ISO/IEEE 11073 MDC) and the codes that mark an ECG Observation."""

from __future__ import annotations

MDC_SYSTEMS = frozenset({"urn:iso:std:iso:11073:10101", "urn:oid:2.16.840.1.113883.6.24"})
MDC_SYSTEM = "urn:iso:std:iso:11073:10101"
LOINC_SYSTEM = "http://loinc.org"
LOINC_EKG_STUDY = "11524-6"
LOINC_EKG_PANEL = "34534-8"  # "12 lead EKG panel": what many carts and EHRs code a resting ECG as
# The Observation codes accepted as "this is an ECG" (also listed in the CapabilityStatement).
ECG_CODES: tuple[tuple[str, str, str], ...] = (
    ("http://loinc.org", "11524-6", "EKG study"),
    ("http://loinc.org", "34534-8", "12 lead EKG panel"),
    ("urn:iso:std:iso:11073:10101", "131328", "MDC_ECG_ELEC_POTL"),
)
MDC_ECG_ELEC_POTL = "131328"

# Leads are matched by code, never by display: the spec's own example labels code 131389 "III"
# correctly but other senders reuse displays loosely.
LEAD_BY_MDC_CODE: dict[str, str] = {
    "131329": "I",
    "131330": "II",
    "131389": "III",
    "131390": "aVR",
    "131391": "aVL",
    "131392": "aVF",
    "131331": "V1",
    "131332": "V2",
    "131333": "V3",
    "131334": "V4",
    "131335": "V5",
    "131336": "V6",
}
MDC_CODE_BY_LEAD = {lead: code for code, lead in LEAD_BY_MDC_CODE.items()}
STANDARD_LEADS: tuple[str, ...] = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Factor from the origin's unit to microvolts. Keys are UCUM codes and common human spellings.
MICROVOLTS_PER_UNIT: dict[str, float] = {
    "uV": 1.0,
    "µV": 1.0,
    "μV": 1.0,
    "microvolt": 1.0,
    "mV": 1000.0,
    "millivolt": 1000.0,
    "V": 1_000_000.0,
    "nV": 0.001,
}


def is_ecg_code(codings: list[dict[str, object]]) -> bool:
    """Return True when a CodeableConcept's codings mark an ECG (LOINC 11524-6 or 34534-8, MDC 131328)."""
    for coding in codings:
        system, code = coding.get("system"), coding.get("code")
        if system == LOINC_SYSTEM and code in {LOINC_EKG_STUDY, LOINC_EKG_PANEL}:
            return True
        if system in MDC_SYSTEMS and code == MDC_ECG_ELEC_POTL:
            return True
    return False
