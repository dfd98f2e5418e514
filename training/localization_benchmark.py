"""A shareable localization benchmark: synthetic anomalies injected into real held-out normal ECGs.

The published localization benchmark (cardiologist-annotated PTB-XL) is not public. This one is
built on the fly, deterministically (seeded per record and type), from real NORM-only ECGs of a
held-out fold (fold 10 for the test figures; fold 9 for choosing the Dice threshold), in mV at
the recording's own rate, before any preprocessing. Each injection has a ground-truth mask over
(lead, sample). Types (amplitudes are typical clinical magnitudes):

- ``pvc``: a premature wide QRS (biphasic, ~140 ms) with a discordant T wave at 55% of an RR
  interval, all leads, random polarity/amplitude (0.8–1.5 mV) per lead;
- ``st_change``: ST elevation or depression of 0.15–0.3 mV from J (R+40 ms) to R+320 ms over
  three consecutive beats in one anatomical lead group (inferior, lateral, anterior);
- ``t_inversion``: the T wave (R+150 ms to R+min(0.6 RR, 450 ms)) mirrored about its local
  baseline over three beats in one lead group;
- ``dropped_beat``: one P-QRS-T complex replaced by a flat line (a pause), all leads;
- ``baseline_wander``: a 2 s, 0.8–1.5 mV slow excursion in one to three leads;
- ``muscle_noise``: 1.5 s of 8–45 Hz noise (0.08–0.15 mV SD) in one to three leads;
- ``lead_reversal``: left/right arm electrode swap (I inverted, II<->III, aVR<->aVL) over the
  whole recording; leads I, II, III, aVR, aVL are marked.

Metrics per type: localization AUROC (map vs mask, per ECG over valid leads x samples, then
averaged), Dice of the map thresholded at one global value chosen on fold-9 injections, and
detection AUROC (injected vs the same ECGs clean).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score

from inference.preprocessing import (
    DETECTOR_RATE_HZ,
    LEADS_12,
    RECORD_SAMPLES,
    bandpass,
    detect_r_peaks,
    detector_inputs,
    stack_detector_inputs,
)
from training.data.ptbxl import EcgRecord

ANOMALY_TYPES = ("pvc", "st_change", "t_inversion", "dropped_beat", "baseline_wander", "muscle_noise", "lead_reversal")
LEAD_GROUPS = {
    "inferior": ("II", "III", "aVF"),
    "lateral": ("I", "aVL", "V5", "V6"),
    "anterior": ("V1", "V2", "V3", "V4"),
}
_IDX = {name: i for i, name in enumerate(LEADS_12)}


def _taper(n: int, edge: int) -> np.ndarray:
    """Return a length-n window that ramps up/down over ``edge`` samples (raised cosine)."""
    w = np.ones(n)
    edge = min(edge, n // 2)
    if edge > 0:
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, edge))
        w[:edge], w[-edge:] = ramp, ramp[::-1]
    return w


def _beats_in_view(x: np.ndarray, fs: int) -> np.ndarray:
    """Return R peaks well inside the analysed 9.6 s window (1 s margin on each side)."""
    peaks = detect_r_peaks(bandpass(x, fs), fs)
    n = x.shape[1]
    lo = (n - RECORD_SAMPLES * fs / DETECTOR_RATE_HZ) / 2 + fs
    return peaks[(peaks > max(lo, fs)) & (peaks < n - max(lo, fs))]


def _pvc(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    i = rng.integers(0, len(peaks) - 1)
    t0 = int(peaks[i] + 0.55 * (peaks[i + 1] - peaks[i]))
    a, b = max(0, t0 - int(0.08 * fs)), min(x.shape[1], t0 + int(0.45 * fs))
    t = (np.arange(a, b) - t0) / fs
    qrs = -t / 0.025 * np.exp(0.5 - 0.5 * (t / 0.025) ** 2)  # derivative of Gaussian, peak 1
    twave = np.exp(-0.5 * ((t - 0.28) / 0.06) ** 2)
    amp = rng.uniform(0.8, 1.5, 12) * rng.choice([-1.0, 1.0], 12)
    x[:, a:b] += amp[:, None] * ((qrs - 0.4 * twave) * _taper(b - a, int(0.02 * fs)))[None, :]
    m[:, a:b] = True


def _three_beats(peaks: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    start = rng.integers(0, max(1, len(peaks) - 3))
    return peaks[start : start + 3]


def _group(rng: np.random.Generator) -> np.ndarray:
    name = list(LEAD_GROUPS)[rng.integers(0, len(LEAD_GROUPS))]
    return np.array([_IDX[lead] for lead in LEAD_GROUPS[name]])


def _st_change(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    leads = _group(rng)
    shift = rng.uniform(0.15, 0.3) * rng.choice([-1.0, 1.0])
    for r in _three_beats(peaks, rng):
        a, b = int(r + 0.04 * fs), int(r + 0.32 * fs)
        x[leads, a:b] += shift * _taper(b - a, int(0.03 * fs))
        m[np.ix_(leads, np.arange(a, b))] = True


def _t_inversion(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    leads = _group(rng)
    rr = float(np.median(np.diff(peaks)))
    for r in _three_beats(peaks, rng):
        a, b = int(r + 0.15 * fs), int(r + min(0.6 * rr, 0.45 * fs))
        for lead in leads:
            seg = x[lead, a:b]
            base = np.linspace(seg[0], seg[-1], len(seg))
            x[lead, a:b] = seg - 2.0 * (seg - base) * _taper(len(seg), int(0.02 * fs))
        m[np.ix_(leads, np.arange(a, b))] = True


def _dropped_beat(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    i = rng.integers(1, len(peaks) - 1)
    a = int(peaks[i] - 0.35 * (peaks[i] - peaks[i - 1]))
    b = int(peaks[i] + 0.6 * (peaks[i + 1] - peaks[i]))
    for lead in range(12):
        x[lead, a:b] = np.linspace(x[lead, a], x[lead, b], b - a)
    m[:, a:b] = True


def _some_leads(rng: np.random.Generator) -> np.ndarray:
    return rng.choice(12, size=rng.integers(1, 4), replace=False)


def _baseline_wander(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    leads = _some_leads(rng)
    a = int(rng.integers(peaks[0], peaks[-1] - 2 * fs))
    n = 2 * fs
    bump = np.sin(np.linspace(0, np.pi, n)) ** 2 * np.sin(np.linspace(0, 2 * np.pi * rng.uniform(1.0, 2.0), n))
    x[leads, a : a + n] += rng.uniform(0.8, 1.5) * bump
    m[np.ix_(leads, np.arange(a, a + n))] = True


def _muscle_noise(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    from scipy import signal as sps

    leads = _some_leads(rng)
    n = int(1.5 * fs)
    a = int(rng.integers(peaks[0], peaks[-1] - n))
    sos = sps.butter(4, (8.0, min(45.0, fs / 2 - 1)), btype="bandpass", fs=fs, output="sos")
    noise = sps.sosfilt(sos, rng.standard_normal((len(leads), n + fs)), axis=1)[:, fs:]
    noise *= rng.uniform(0.08, 0.15) / noise.std()
    x[leads, a : a + n] += noise * _taper(n, int(0.05 * fs))
    m[np.ix_(leads, np.arange(a, a + n))] = True


def _lead_reversal(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    i, ii, iii, avr, avl = (_IDX[k] for k in ("I", "II", "III", "aVR", "aVL"))
    x[[i, ii, iii, avr, avl]] = np.stack([-x[i], x[iii].copy(), x[ii].copy(), x[avl].copy(), x[avr].copy()])
    m[[i, ii, iii, avr, avl]] = True


INJECTORS: dict[str, Callable[..., None]] = {
    "pvc": _pvc,
    "st_change": _st_change,
    "t_inversion": _t_inversion,
    "dropped_beat": _dropped_beat,
    "baseline_wander": _baseline_wander,
    "muscle_noise": _muscle_noise,
    "lead_reversal": _lead_reversal,
}


def inject(record: EcgRecord, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (signal with the anomaly, bool mask (12, n)) or None if the ECG has too few beats."""
    x = np.nan_to_num(record.signal.astype(np.float64))
    fs = record.sample_rate_hz
    peaks = _beats_in_view(x, fs)
    if len(peaks) < 4:
        return None
    mask = np.zeros_like(x, dtype=bool)
    rng = np.random.default_rng([seed, ANOMALY_TYPES.index(kind)])
    INJECTORS[kind](x, mask, fs, peaks, rng)
    return x.astype(np.float32), mask


def mask_to_record_view(mask: np.ndarray, rate_hz: int) -> np.ndarray:
    """Map a (12, n) mask at ``rate_hz`` onto the detector's centred 250 Hz record view."""
    n250 = int(round(mask.shape[1] * DETECTOR_RATE_HZ / rate_hz))
    idx = np.minimum((np.arange(n250) * rate_hz / DETECTOR_RATE_HZ).astype(int), mask.shape[1] - 1)
    m = mask[:, idx]
    start = max(0, (n250 - RECORD_SAMPLES) // 2)
    out = np.zeros((12, RECORD_SAMPLES), dtype=bool)
    view = m[:, start : start + RECORD_SAMPLES]
    out[:, : view.shape[1]] = view
    return out


def build_cases(
    records: list[EcgRecord], seed: int = 0
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray, list[int]]]:
    """Return {type: (stacked detector inputs, masks (n, 12, L), source record indices)}."""
    cases = {}
    for kind in ANOMALY_TYPES:
        items, masks, src = [], [], []
        for i, rec in enumerate(records):
            out = inject(rec, kind, seed + i)
            if out is None:
                continue
            signal, mask = out
            items.append(detector_inputs(signal, rec.sample_rate_hz))
            masks.append(mask_to_record_view(mask, rec.sample_rate_hz))
            src.append(i)
        cases[kind] = (stack_detector_inputs(items), np.stack(masks), src)
    return cases


def per_ecg_auroc(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray) -> float:
    """Return the mean over ECGs of the AUROC of map values vs mask (valid points only)."""
    values = []
    for amap, mask, v in zip(maps, masks, valid, strict=True):
        y, s = mask[v], amap[v]
        if 0 < y.sum() < y.size:
            values.append(roc_auc_score(y, s))
    return float(np.mean(values)) if values else float("nan")


def mean_dice(maps: np.ndarray, masks: np.ndarray, valid: np.ndarray, threshold: float) -> float:
    """Return the mean per-ECG Dice of ``maps >= threshold`` vs the masks."""
    dices = []
    for amap, mask, v in zip(maps, masks, valid, strict=True):
        pred = (amap >= threshold) & v
        gt = mask & v
        denom = pred.sum() + gt.sum()
        dices.append(2.0 * (pred & gt).sum() / denom if denom else 1.0)
    return float(np.mean(dices))


def best_dice_threshold(maps: list[np.ndarray], masks: list[np.ndarray], valid: list[np.ndarray]) -> float:
    """Return the map threshold that maximises the mean Dice over all types (validation data)."""
    pooled = np.concatenate([m.ravel() for m in maps])
    candidates = np.quantile(pooled, np.linspace(0.5, 0.995, 40))
    scores = [
        np.mean([mean_dice(mp, mk, v, t) for mp, mk, v in zip(maps, masks, valid, strict=True)]) for t in candidates
    ]
    return float(candidates[int(np.argmax(scores))])


def valid_points(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Return bool (n, 12, L): valid lead x valid sample."""
    return arrays["lead_valid"][:, :, None] & arrays["sample_valid"][:, None, :]


def run_benchmark(
    score_fn: Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]],
    val_records: list[EcgRecord],
    test_records: list[EcgRecord],
) -> dict[str, object]:
    """Return per-type localization AUROC, Dice and detection AUROC on the test injections.

    ``score_fn(arrays) -> (scores (n,), maps (n, 12, L))``. The Dice threshold is chosen on the
    validation injections only.
    """
    val_cases = build_cases(val_records, seed=9000)
    val_maps, val_masks, val_valid = [], [], []
    for arrays, masks, _ in val_cases.values():
        _, maps = score_fn(arrays)
        val_maps.append(maps)
        val_masks.append(masks)
        val_valid.append(valid_points(arrays))
    threshold = best_dice_threshold(val_maps, val_masks, val_valid)
    clean = stack_detector_inputs([detector_inputs(r.signal, r.sample_rate_hz) for r in test_records])
    clean_scores, _ = score_fn(clean)
    results: dict[str, object] = {}
    for kind, (arrays, masks, src) in build_cases(test_records, seed=10000).items():
        scores, maps = score_fn(arrays)
        valid = valid_points(arrays)
        det = roc_auc_score(np.r_[np.zeros(len(src)), np.ones(len(src))], np.r_[clean_scores[src], scores])
        results[kind] = {
            "n": len(src),
            "localization_auroc": round(per_ecg_auroc(maps, masks, valid), 4),
            "dice": round(mean_dice(maps, masks, valid, threshold), 4),
            "detection_auroc": round(float(det), 4),
        }
    per_type = [v for v in results.values() if isinstance(v, dict)]
    return {
        "localization_auroc": round(float(np.mean([v["localization_auroc"] for v in per_type])), 4),
        "dice": round(float(np.mean([v["dice"] for v in per_type])), 4),
        "dice_threshold": threshold,
        "per_type": results,
    }


def load_normals(index_df, limit: int = 0) -> list[EcgRecord]:  # type: ignore[no-untyped-def]
    """Load the NORM-only records of an index (optionally the first ``limit``)."""
    from training.data.ptbxl import load_ptbxl_record

    rows = index_df[index_df["label"] == "normal"]
    if limit:
        rows = rows.head(limit)
    return [load_ptbxl_record(Path(row["root"]), row) for _, row in rows.iterrows()]
