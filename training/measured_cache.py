"""Measured findings of the foundation model's ECGs, computed from the raw signals and cached.

The report decoder is conditioned on ``inference.clinical.conditioning.measured_vector`` of the
rule-based measured findings (``inference.clinical.statements.measured_findings``). Measuring one
ECG takes about 40 ms, so the measurements and findings of every record are cached as JSON under
``training/runs/`` (gitignored), keyed by the record ids and the source of the measuring modules
(a rule change re-measures).

ptb-xl-extra signals are z-scored per lead, not mV (``EcgRecord.standardized``): amplitude
statements (low QRS voltage, ST elevation/depression) are meaningless there and are left 0 in
their vectors (``measured_vector(..., amplitudes_valid=False)``). Rhythm, interval and axis
statements do not depend on the unit and are kept.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from inference.clinical.conditioning import N_MEASURED, measured_findings_of_signal, measured_vector
from inference.clinical.types import EcgMeasurements, Finding
from inference.preprocessing import LEADS_12
from training.data.challenge import load_challenge_records
from training.data.ptbxl import EcgRecord, load_ptbxl_record
from training.data.splits import load_index, split_records

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
RUNS = REPO_ROOT / "training" / "runs"
_SOURCES = ("measurements.py", "statements.py", "beats.py", "lead_measures.py", "intended_use.py", "conditioning.py")


@dataclass(frozen=True)
class MeasuredRecord:
    """One ECG's measurements and measured findings (and whether its amplitudes are in mV)."""

    measurements: EcgMeasurements
    findings: tuple[Finding, ...]
    amplitudes_valid: bool

    @property
    def vector(self) -> np.ndarray:
        return measured_vector(self.findings, amplitudes_valid=self.amplitudes_valid)


def measure_record(rec: EcgRecord) -> MeasuredRecord:
    """Measure one record (raw signal, LEADS_12 order)."""
    m, findings = measured_findings_of_signal(
        np.asarray(rec.signal, dtype=np.float64),
        float(rec.sample_rate_hz),
        LEADS_12,
        sex=rec.sex,
        age_years=rec.age_years,
    )
    return MeasuredRecord(m, tuple(findings), amplitudes_valid=not rec.standardized)


def _rules_version() -> str:
    root = REPO_ROOT / "inference" / "clinical"
    digest = hashlib.sha256()
    for name in _SOURCES:
        path = root / name
        digest.update(path.read_bytes() if path.exists() else b"")
    return digest.hexdigest()[:12]


def _cached(name: str, records: Iterable[EcgRecord], cache_dir: Path) -> dict[str, MeasuredRecord]:
    path = Path(cache_dir) / f"measured_{name}_{_rules_version()}.json"
    stored: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    out: dict[str, MeasuredRecord] = {}
    fresh = 0
    for rec in records:
        if rec.record_id in stored:
            row = stored[rec.record_id]
            out[rec.record_id] = MeasuredRecord(
                EcgMeasurements.from_json(row["measurements"]),
                tuple(Finding.from_json(f) for f in row["findings"]),
                bool(row["amplitudes_valid"]),
            )
            continue
        measured = measure_record(rec)
        out[rec.record_id] = measured
        stored[rec.record_id] = {
            "measurements": measured.measurements.to_json(),
            "findings": [f.to_json() for f in measured.findings],
            "amplitudes_valid": measured.amplitudes_valid,
        }
        fresh += 1
    if fresh:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(stored, default=float))
        logger.info("measured %d new records (%s)", fresh, path.name)
    return out


def _ptbxl_records(data_dir: Path, wanted: set[str]) -> Iterator[EcgRecord]:
    """Raw records of ``wanted`` ids, loaded as ``training.foundation_data.build_arrays`` loads them."""
    index = load_index(Path(data_dir))
    splits = split_records(index, keep_unlabelled_in_train=True)
    frame = pd.concat([splits[k].assign(split=k) for k in ("train", "val", "test")], ignore_index=True)
    for _, row in frame.iterrows():
        rate = 500 if isinstance(row.get("filename_hr"), str) else 100
        rec = load_ptbxl_record(Path(row["root"]), row, sampling_rate_hz=rate)
        if rec.record_id in wanted:
            yield rec


def ptbxl_measured(data_dir: Path, record_ids: Iterable[str], cache_dir: Path = RUNS) -> dict[str, MeasuredRecord]:
    """Return {record_id: MeasuredRecord} for PTB-XL-layout records (cached)."""
    return _cached("ptbxl", _ptbxl_records(data_dir, {str(r) for r in record_ids}), cache_dir)


def challenge_measured(root: Path, cache_dir: Path = RUNS) -> dict[str, MeasuredRecord]:
    """Return {record_id: MeasuredRecord} for every record of a Challenge WFDB directory (cached)."""
    return _cached("challenge_" + Path(root).name, load_challenge_records(Path(root)), cache_dir)


def vectors(measured: dict[str, MeasuredRecord], record_ids: Iterable[str]) -> np.ndarray:
    """Stack the measured vectors (N, K) float32 in ``record_ids`` order."""
    rows = [measured[str(r)].vector for r in record_ids]
    return np.stack(rows).astype(np.float32) if rows else np.zeros((0, N_MEASURED), np.float32)
