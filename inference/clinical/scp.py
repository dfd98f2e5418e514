"""The 71 PTB-XL SCP-ECG statements: the labels the foundation model's heads and decoder speak.

``data/scp_statements.csv`` is PTB-XL's own file (CC BY 4.0), kept here, the lowest layer that
reads it: the decoder-text checker parses report sentences back to codes with it, and the review
app (``cds.review.scp``) labels ECGs with it, so exported labels read back with
``training.data.ptbxl`` unchanged.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

SCP_STATEMENTS_CSV = Path(__file__).resolve().parent / "data" / "scp_statements.csv"


@dataclass(frozen=True)
class ScpStatement:
    """One statement: code, English description, diagnostic superclass ('' if not diagnostic)."""

    code: str
    description: str
    superclass: str
    kind: str  # diagnostic | form | rhythm


def _load() -> dict[str, ScpStatement]:
    with SCP_STATEMENTS_CSV.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    statements = {}
    for row in rows:
        code = row[""]
        kind = "diagnostic" if row["diagnostic"] == "1.0" else "rhythm" if row["rhythm"] == "1.0" else "form"
        statements[code] = ScpStatement(code, row["description"], row["diagnostic_class"] or "", kind)
    return statements


SCP_STATEMENTS = _load()
SCP_CODES = tuple(SCP_STATEMENTS)


def report_phrase(code: str) -> str:
    """Return the sentence the report decoder writes for ``code`` (training.foundation_text's rule)."""
    return "normal ecg" if code == "NORM" else SCP_STATEMENTS[code].description.strip().lower()


# The decoder writes each statement as its lower-cased description, one sentence each.
CODE_BY_PHRASE = {report_phrase(code): code for code in SCP_STATEMENTS}

# The measured statement (inference.clinical.statements, SNOMED CT) each SCP label corresponds to:
# a model's claim is confirmed when the measurements made the same statement.
SNOMED_OF_SCP = {
    "SR": "426783006",
    "SBRAD": "426177001",
    "STACH": "427084000",
    "SARRH": "427393009",
    "AFIB": "164889003",
    "AFLT": "164890007",
    "1AVB": "270492004",
    "LPR": "270492004",
    "CRBBB": "59118001",
    "CLBBB": "164909002",
    "IRBBB": "713426002",
    "ILBBB": "251120003",
    "IVCD": "698252002",
    "LNGQT": "111975006",
    "PVC": "427172004",
    "PAC": "284470004",
    "LVOLT": "251146004",
    "STE_": "164931005",
    "STD_": "429622005",
    "PACE": "10370003",
}
