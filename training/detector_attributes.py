"""Derive and cache the attribute-head targets (age, sex, HR, PR, QRS, QT, QTc).

PTB-XL gives age and sex but no intervals, so the intervals are measured from the signal with
neurokit2 (R peaks, then DWT delineation on lead II, median over beats). Implausible or failed
measurements become NaN and are masked out of the attribute loss, never imputed. The derived
table is cached as CSV under ``training/runs/`` (gitignored) so delineation runs once.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from training.data.ptbxl import load_ptbxl_record

logger = logging.getLogger(__name__)

ATTRIBUTES = ("age", "sex", "hr", "pr", "qrs", "qt", "qtc")
# Fixed normalisation (typical adult values) so targets are O(1) and independent of the split.
ATTRIBUTE_MEAN = np.array([60.0, 0.5, 70.0, 160.0, 95.0, 390.0, 420.0], dtype=np.float32)
ATTRIBUTE_STD = np.array([17.0, 0.5, 15.0, 30.0, 20.0, 40.0, 30.0], dtype=np.float32)
# Physiological bounds (ms / bpm); a delineation outside them is a failure, not a finding.
_BOUNDS = {"hr": (25, 250), "pr": (60, 400), "qrs": (40, 220), "qt": (200, 650), "qtc": (250, 700)}


def _median_ms(a: list[float], b: list[float], rate: float) -> float:
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    diffs = diffs[np.isfinite(diffs) & (diffs > 0)]
    return float(np.median(diffs) * 1000.0 / rate) if diffs.size else float("nan")


def derive_intervals(lead: np.ndarray, rate_hz: float) -> dict[str, float]:
    """Return {hr, pr, qrs, qt, qtc} (bpm / ms, NaN when not measurable) for one lead."""
    import neurokit2 as nk

    out = dict.fromkeys(("hr", "pr", "qrs", "qt", "qtc"), float("nan"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clean = nk.ecg_clean(np.nan_to_num(lead.astype(np.float64)), sampling_rate=int(rate_hz))
            _, info = nk.ecg_peaks(clean, sampling_rate=int(rate_hz))
            peaks = np.asarray(info["ECG_R_Peaks"])
            if peaks.size < 3:
                return out
            rr = float(np.median(np.diff(peaks))) / rate_hz
            out["hr"] = 60.0 / rr
            _, waves = nk.ecg_delineate(clean, peaks, sampling_rate=int(rate_hz), method="dwt")
    except Exception as exc:  # neurokit2 fails in assorted ways on noisy input
        logger.debug("delineation failed: %s", exc)
        return out
    out["pr"] = _median_ms(waves["ECG_P_Onsets"], waves["ECG_R_Onsets"], rate_hz)
    out["qrs"] = _median_ms(waves["ECG_R_Onsets"], waves["ECG_R_Offsets"], rate_hz)
    out["qt"] = _median_ms(waves["ECG_R_Onsets"], waves["ECG_T_Offsets"], rate_hz)
    out["qtc"] = out["qt"] / np.sqrt(rr)  # Bazett
    for key, (lo, hi) in _BOUNDS.items():
        if not lo <= out[key] <= hi:
            out[key] = float("nan")
    return out


def build_attribute_table(index_df: pd.DataFrame) -> pd.DataFrame:
    """Return one row per record: record_id plus raw (unnormalised) attribute values."""
    rows = []
    for _, row in index_df.iterrows():
        rec = load_ptbxl_record(Path(row["root"]), row)
        values = derive_intervals(rec.signal[1], rec.sample_rate_hz)
        sex = {"male": 0.0, "female": 1.0}.get(rec.sex or "", float("nan"))
        age = rec.age_years if rec.age_years is not None else float("nan")
        rows.append({"record_id": rec.record_id, "age": age, "sex": sex, **values})
    return pd.DataFrame(rows, columns=["record_id", *ATTRIBUTES])


def cached_attribute_table(index_df: pd.DataFrame, cache: Path) -> pd.DataFrame:
    """Return the attribute table for ``index_df``, computing only records missing from ``cache``."""
    cached = pd.read_csv(cache) if cache.exists() else pd.DataFrame(columns=["record_id", *ATTRIBUTES])
    todo = index_df[~index_df["record_id"].isin(set(cached["record_id"]))]
    if len(todo):
        logger.info("deriving attributes for %d records", len(todo))
        fresh = build_attribute_table(todo)
        cached = fresh if cached.empty else pd.concat([cached, fresh], ignore_index=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cached.to_csv(cache, index=False)
    return cached.set_index("record_id").loc[list(index_df["record_id"])].reset_index()


def normalised_targets(table: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Return (targets float32 (n, 7) normalised, valid bool (n, 7)) from an attribute table."""
    raw = table[list(ATTRIBUTES)].to_numpy(dtype=np.float32)
    valid = np.isfinite(raw)
    return np.where(valid, (raw - ATTRIBUTE_MEAN) / ATTRIBUTE_STD, 0.0).astype(np.float32), valid


if __name__ == "__main__":
    import argparse

    from training.data.splits import load_index

    parser = argparse.ArgumentParser(description="Derive and cache attribute targets.")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
    parser.add_argument(
        "--cache", type=Path, default=Path(__file__).resolve().parent / "runs" / "detector_attributes.csv"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    table = cached_attribute_table(load_index(args.data), args.cache)
    print(table.describe().to_string())
