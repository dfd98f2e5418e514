"""Load PhysioNet/CinC Challenge WFDB directories (``#Age``, ``#Sex``, ``#Dx`` header comments).

Labels come from the SNOMED CT codes in ``#Dx``: sinus rhythm (426783006) alone is normal, any
other code makes the record abnormal, and a record without ``#Dx`` codes has no label (None).
Challenge records carry no PTB-XL superclasses, so ``superclasses`` is empty.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from training.data.ptbxl import EcgRecord, read_wfdb_12lead

SINUS_RHYTHM_SNOMED = "426783006"


def parse_header_comments(comments: list[str]) -> dict[str, str]:
    """Return {key: value} for comment lines such as ``Age: 54`` (keys lower-cased)."""
    out: dict[str, str] = {}
    for line in comments:
        key, sep, value = line.lstrip("#").partition(":")
        if sep:
            out[key.strip().lower()] = value.strip()
    return out


def label_from_dx(codes: frozenset[str]) -> str | None:
    """Return "normal" if ``codes`` is exactly sinus rhythm, "abnormal" if other codes, else None."""
    if not codes:
        return None
    return "normal" if codes == {SINUS_RHYTHM_SNOMED} else "abnormal"


def _parse_age(text: str | None) -> float | None:
    try:
        age = float(text) if text else None
    except ValueError:
        return None
    if age is None or age != age or age < 0:
        return None
    return age


def _parse_sex(text: str | None) -> str | None:
    value = (text or "").strip().lower()
    if value in ("male", "m"):
        return "male"
    if value in ("female", "f"):
        return "female"
    return None


def load_challenge_record(header_path: Path) -> EcgRecord:
    """Load one Challenge record from its ``.hea`` path."""
    signal, rate, comments = read_wfdb_12lead(header_path.with_suffix(""))
    meta = parse_header_comments(comments)
    codes = frozenset(c.strip() for c in meta.get("dx", "").split(",") if c.strip())
    return EcgRecord(
        record_id=f"challenge:{header_path.stem}",
        signal=signal,
        sample_rate_hz=rate,
        standardized=False,
        age_years=_parse_age(meta.get("age")),
        sex=_parse_sex(meta.get("sex")),
        scp_codes={f"SNOMED:{c}": None for c in sorted(codes)},
        superclasses=frozenset(),
        label=label_from_dx(codes),
        strat_fold=None,
        report="",
        source_split=None,
    )


def is_challenge_dir(root: Path) -> bool:
    """Return True if ``root`` holds WFDB headers and no PTB-XL database file anywhere below it."""
    root = Path(root)
    return not any(root.rglob("ptbxl_database.csv")) and any(root.rglob("*.hea"))


def load_challenge_records(root: Path) -> Iterator[EcgRecord]:
    """Yield every record under ``root`` (recursively), sorted by path for reproducibility."""
    for header in sorted(Path(root).rglob("*.hea")):
        yield load_challenge_record(header)
