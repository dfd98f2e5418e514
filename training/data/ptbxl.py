"""Load PTB-XL-layout folders (the full dataset, the subset, the standardized extra records).

The same code runs on the full 21,799-record PTB-XL release and on the small folders under
``../shared/data``: everything is driven by ``ptbxl_database.csv`` and ``scp_statements.csv``.

Label rule (deterministic, shared by every model):
- ``normal``: the record's set of diagnostic superclasses is exactly ``{"NORM"}``;
- ``abnormal``: it has any diagnostic superclass other than NORM (NORM may also be present);
- ``None``: no diagnostic statement at all. These records are excluded from labelled splits and
  counted in the ``excluded`` report of :func:`training.data.splits.split_records`.
Likelihoods are ignored (PTB-XL's 0 means "unknown", and ptb-xl-extra stores ``None``), so a
statement counts whatever its likelihood.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import wfdb

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")

# PTB-XL codes ages over 89 as 300 (de-identification); treat it as unknown rather than 300 years.
_AGE_CODED_OVER_89 = 300.0
# ptb-xl-extra marks its standardized records with this header comment and these extra columns.
_STANDARDIZED_MARKERS = ("z-scored", "not millivolts")
_EXTRA_COLUMNS = ("label_source", "source_split")


@dataclass(frozen=True)
class EcgRecord:
    """One 12-lead ECG with the metadata every model needs."""

    record_id: str  # "ptbxl:<ecg_id>" or "challenge:<name>"
    signal: np.ndarray  # float32 (12, n_samples) in LEADS_12 order; mV, or z-units if standardized
    sample_rate_hz: int
    standardized: bool  # True for ptb-xl-extra records (0.5–40 Hz filtered + z-scored, not mV)
    age_years: float | None
    sex: str | None  # "male" | "female" | None
    scp_codes: dict[str, float | None]
    superclasses: frozenset[str]  # diagnostic superclasses from scp_statements.csv (likelihood ignored)
    label: str | None  # "normal" | "abnormal" | None (excluded)
    strat_fold: int | None
    report: str
    source_split: str | None  # ptb-xl-extra's `source_split`, else None


def label_from_superclasses(superclasses: frozenset[str] | set[str]) -> str | None:
    """Return "normal", "abnormal" or None for a set of diagnostic superclasses.

    NORM alone is normal; any other superclass (with or without NORM) is abnormal; an empty set
    means no diagnostic statement and returns None (the record is excluded, never guessed).
    """
    if not superclasses:
        return None
    if set(superclasses) == {"NORM"}:
        return "normal"
    return "abnormal"


# The clinical normal (issue 12): NORM as the only diagnostic superclass is not enough; 34 of the
# subset's 290 such records also carry a rhythm or ectopy statement (sinus bradycardia, AF, PVC...).
# A clinically normal ECG is in sinus rhythm (sinus arrhythmia is a normal variant, as in the AHA/ACC/HRS
# statements and our report) with no other rhythm statement, no ectopic beat and no conduction
# disturbance (CD is a diagnostic superclass, so NORM-only already excludes it). Form statements the
# cardiologist kept under a NORM diagnosis (ABQRS, NT_, VCLVH, LVOLT, HVOLT, TAB_) do not make it abnormal.
SINUS_CODES = frozenset({"SR", "SARRH"})
ABNORMAL_RHYTHM_CODES = frozenset({"AFIB", "STACH", "SBRAD", "PACE", "SVARR", "BIGU", "AFLT", "SVTAC", "PSVT", "TRIGU"})
ECTOPY_CODES = frozenset({"PVC", "PAC", "PRC(S)"})
# Form statements that do not go with a normal ECG even under a NORM diagnosis (intervals, ST-T).
ABNORMAL_FORM_CODES = frozenset({"LNGQT", "LPR", "STD_", "STE_", "NDT", "NST_", "INVT", "QWAVE", "DIG", "LOWT"})
NORMAL_FORM_CODES = frozenset({"ABQRS", "NT_", "VCLVH", "LVOLT", "HVOLT", "TAB_"})  # the rest of PTB-XL's form codes


def clinical_label(scp_codes: Any, superclasses: frozenset[str] | set[str]) -> str | None:
    """Return "normal", "abnormal" or None under the clinical definition above.

    Normal: NORM is the only diagnostic superclass and no abnormal rhythm, ectopy or abnormal form
    statement is present. Abnormal: any other superclass, or NORM with such a statement. None: no
    diagnostic statement. (Records with only a "NORM" list entry, like ptb-xl-extra's normal list,
    count as normal: their other statements are unknown, as the extra README says.)
    """
    base = label_from_superclasses(superclasses)
    if base != "normal":
        return base
    codes = set(scp_codes)
    if codes & (ABNORMAL_RHYTHM_CODES | ECTOPY_CODES | ABNORMAL_FORM_CODES):
        return "abnormal"
    return "normal"


def parse_scp_codes(text: Any) -> dict[str, float | None]:
    """Parse the ``scp_codes`` column (a Python dict literal) into a dict.

    Missing or empty cells give ``{}``; a ``None`` or NaN likelihood stays ``None``.
    """
    if not isinstance(text, str) or not text.strip():
        return {}
    parsed = ast.literal_eval(text)
    if not isinstance(parsed, dict):
        raise ValueError(f"scp_codes is not a dict literal: {text!r}")
    out: dict[str, float | None] = {}
    for code, value in parsed.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            out[str(code)] = None
        else:
            out[str(code)] = float(value)
    return out


def load_diagnostic_map(root: Path) -> dict[str, str]:
    """Return {scp statement: diagnostic superclass} from ``root/scp_statements.csv``."""
    statements = pd.read_csv(root / "scp_statements.csv", index_col=0)
    diagnostic = statements[statements["diagnostic"] == 1.0]
    return {str(code): str(cls) for code, cls in diagnostic["diagnostic_class"].items() if isinstance(cls, str)}


def _clean_age(value: Any) -> float | None:
    if value is None or pd.isna(value):
        return None
    age = float(value)
    if age >= _AGE_CODED_OVER_89 or age < 0:
        return None
    return age


def _clean_sex(value: Any) -> str | None:
    if value is None or pd.isna(value):
        return None
    # PTB-XL: 0 = male, 1 = female.
    return {0: "male", 1: "female"}.get(int(value))


def _clean_fold(value: Any) -> int | None:
    if value is None or pd.isna(value):
        return None
    return int(value)


def load_ptbxl_index(root: Path) -> pd.DataFrame:
    """Return one row per record of the PTB-XL-layout folder ``root``.

    Adds to the original columns: ``record_id``, ``root``, ``scp_dict``, ``superclasses``
    (frozenset), ``label`` (superclass rule), ``clinical_label`` (clinical rule), ``age_years``, ``sex_str``, ``fold`` (int or None), ``source_split``
    (None outside ptb-xl-extra) and ``standardized``.
    Raises FileNotFoundError if ``ptbxl_database.csv`` or ``scp_statements.csv`` is missing.
    """
    root = Path(root)
    db = pd.read_csv(root / "ptbxl_database.csv")
    diag = load_diagnostic_map(root)
    db["ecg_id"] = db["ecg_id"].astype(int)
    db["record_id"] = [f"ptbxl:{i}" for i in db["ecg_id"]]
    db["root"] = str(root)
    db["scp_dict"] = [parse_scp_codes(t) for t in db["scp_codes"]]
    db["superclasses"] = [frozenset(diag[c] for c in codes if c in diag) for codes in db["scp_dict"]]
    db["label"] = [label_from_superclasses(s) for s in db["superclasses"]]
    db["clinical_label"] = [clinical_label(c, s) for c, s in zip(db["scp_dict"], db["superclasses"], strict=True)]
    db["age_years"] = [_clean_age(a) for a in db["age"]]
    db["sex_str"] = [_clean_sex(s) for s in db["sex"]]
    db["fold"] = [_clean_fold(f) for f in db["strat_fold"]]
    is_extra = all(c in db.columns for c in _EXTRA_COLUMNS)
    if "source_split" in db.columns:
        db["source_split"] = [s if isinstance(s, str) else None for s in db["source_split"]]
    else:
        db["source_split"] = None
    # The extra folder's README and record headers state that its signals are z-scored.
    db["standardized"] = is_extra
    for col in ("filename_lr", "filename_hr", "report"):
        if col not in db.columns:
            db[col] = None
    return db.reset_index(drop=True)


def _lead_order(sig_names: list[str]) -> list[int | None]:
    """Return, for each LEADS_12 lead, the column index in ``sig_names`` (None if absent)."""
    upper = [n.strip().upper() for n in sig_names]
    return [upper.index(lead.upper()) if lead.upper() in upper else None for lead in LEADS_12]


def read_wfdb_12lead(record_path: Path) -> tuple[np.ndarray, int, list[str]]:
    """Read a WFDB record and return (signal (12, n) float32 in LEADS_12 order, rate, comments).

    Leads that the record lacks are filled with NaN, so the quality checks see them as missing.
    Signals stored in µV are converted to mV.
    """
    rec = wfdb.rdrecord(str(record_path))
    data = np.asarray(rec.p_signal, dtype=np.float64)  # (n, channels)
    order = _lead_order(list(rec.sig_name))
    out = np.full((len(LEADS_12), data.shape[0]), np.nan, dtype=np.float32)
    units = list(rec.units or [])
    for i, col in enumerate(order):
        if col is None:
            continue
        scale = 1e-3 if col < len(units) and units[col].lower() in ("uv", "µv") else 1.0
        out[i] = (data[:, col] * scale).astype(np.float32)
    return out, int(rec.fs), list(rec.comments or [])


def load_ptbxl_record(root: Path, row: Any, sampling_rate_hz: int = 500) -> EcgRecord:
    """Load one record of ``root`` described by an index ``row`` (a Series or dict).

    Raises ValueError if ``sampling_rate_hz`` is neither 100 nor 500, or if the folder has no
    file at that rate for this record (ptb-xl-extra has no 100 Hz files).
    """
    if sampling_rate_hz not in (100, 500):
        raise ValueError(f"sampling_rate_hz must be 100 or 500, got {sampling_rate_hz}")
    column = "filename_hr" if sampling_rate_hz == 500 else "filename_lr"
    rel = row[column]
    if not isinstance(rel, str) or not rel:
        raise ValueError(f"record {row['ecg_id']} has no {sampling_rate_hz} Hz file in {root}")
    signal, rate, comments = read_wfdb_12lead(Path(root) / rel)
    header_says_standardized = any(m in c.lower() for c in comments for m in _STANDARDIZED_MARKERS)
    report = row.get("report") if hasattr(row, "get") else row["report"]
    return EcgRecord(
        record_id=f"ptbxl:{int(row['ecg_id'])}",
        signal=signal,
        sample_rate_hz=rate,
        standardized=bool(row["standardized"]) or header_says_standardized,
        age_years=_clean_age(row["age_years"]),
        sex=row["sex_str"],
        scp_codes=dict(row["scp_dict"]),
        superclasses=frozenset(row["superclasses"]),
        label=row["label"],
        strat_fold=_clean_fold(row["fold"]),
        report=report if isinstance(report, str) else "",
        source_split=row["source_split"],
    )


def discover_ptbxl_roots(data_dir: Path) -> list[Path]:
    """Return every PTB-XL-layout folder under ``data_dir`` (including itself), sorted.

    A folder qualifies if it holds both ``ptbxl_database.csv`` and ``scp_statements.csv``.
    Returns [] if ``data_dir`` does not exist.
    """
    data_dir = Path(data_dir)
    if not data_dir.exists():
        return []
    roots = {p.parent for p in data_dir.rglob("ptbxl_database.csv") if (p.parent / "scp_statements.csv").exists()}
    return sorted(roots)
