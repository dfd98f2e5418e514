"""A shareable localization benchmark: synthetic findings injected into real held-out normal ECGs.

The published localization benchmark (cardiologist-annotated PTB-XL) is not public. This one is
built on the fly, deterministically (seeded per record and type), from real NORM-only ECGs of a
held-out fold (fold 10 for the test figures; fold 9 for choosing every threshold and weight), in
mV at the recording's own rate, before any preprocessing. Each injection has a ground-truth mask
over (lead, sample): where a clinician would point. Clinical finding types (the headline mean):

- ``pvc``: a premature (60–70% of RR) wide QRS (~140 ms) with a discordant T wave, random
  polarity/amplitude (0.8–1.5 mV) per lead, the next sinus beat hidden (compensatory pause);
  marked: the ectopic beat and its pause, all leads;
- ``pac``: a premature (60–70% of RR) copy of the record's own narrow QRS-T preceded by an
  abnormal (inverted or flat) P wave, the next sinus beat hidden; marked as ``pvc``;
- ``af_segment``: 3–5 s of atrial fibrillation: the record's own QRS-T at irregular intervals
  (RR 55–125% of the sinus RR), no P waves, a 4–8 Hz fibrillatory baseline; marked: the span, all
  leads;
- ``st_change``: ST elevation or depression of 0.15–0.3 mV from J (R+40 ms) to R+320 ms over
  three consecutive beats in one anatomical lead group (inferior, lateral, anterior);
- ``t_inversion``: the T wave (R+150 ms to R+min(0.6 RR, 450 ms)) mirrored about its local
  baseline over three beats in one lead group;
- ``bundle_branch``: every beat of the record widened with a bundle-branch pattern: right (an R'
  at ~90 ms in V1–V2, a wide S in I, aVL, V5, V6) or left (a broad late R in I, aVL, V5, V6, a deep
  wide S in V1–V3); marked: the QRS (R-40 ms to R+150 ms) of those leads, every beat;
- ``av_block``: first degree (every P wave moved 100–140 ms earlier: a long PR; marked: the PR
  span of every beat, all leads) or, when the rate leaves no room for that, second degree (one QRS-T
  after a P removed; marked: the P wave and the missing beat, all leads);
- ``lead_reversal``: left/right arm electrode swap (I inverted, II<->III, aVR<->aVL) over the
  whole recording; leads I, II, III, aVR, aVL are marked.

Artefact types (extra rows, outside the headline mean): ``baseline_wander`` (a 2 s, 0.8–1.5 mV
slow excursion in one to three leads), ``muscle_noise`` (1.5 s of 8–45 Hz noise, 0.08–0.15 mV SD,
in one to three leads).

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

CLINICAL_TYPES = (
    "pvc",
    "pac",
    "af_segment",
    "st_change",
    "t_inversion",
    "bundle_branch",
    "av_block",
    "lead_reversal",
)
ARTEFACT_TYPES = ("baseline_wander", "muscle_noise")
ANOMALY_TYPES = CLINICAL_TYPES + ARTEFACT_TYPES
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


def _complex_template(x: np.ndarray, fs: int, peaks: np.ndarray) -> np.ndarray:
    """Return the record's own median QRS-T (R-80 ms to R+420 ms, no P wave), detrended, tapered."""
    pre, post = int(0.08 * fs), int(0.42 * fs)
    ok = peaks[(peaks - pre >= 0) & (peaks + post <= x.shape[1])]
    w = np.median(np.stack([x[:, r - pre : r + post] for r in ok]), axis=0)
    w = w - np.linspace(w[:, 0], w[:, -1], w.shape[1]).T
    return w * _taper(w.shape[1], int(0.02 * fs))[None, :]


def _flatten(x: np.ndarray, a: int, b: int) -> None:
    """Replace x[:, a:b] by the straight line between its end points (the baseline of a pause)."""
    x[:, a:b] = np.linspace(x[:, a], x[:, b], b - a, endpoint=False).T


def _ectopic(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator, wide: bool) -> None:
    """Insert one premature beat at 60–70% of an RR interval and hide the next sinus beat."""
    i = int(rng.integers(0, len(peaks) - 2))
    r0, r1, r2 = (int(p) for p in peaks[i : i + 3])
    t0 = int(r0 + rng.uniform(0.6, 0.7) * (r1 - r0))
    a = t0 - int((0.1 if wide else 0.22) * fs)
    b = int(r1 + 0.5 * (r2 - r1))
    if wide:
        t = (np.arange(b - a) - (t0 - a)) / fs
        qrs = -t / 0.025 * np.exp(0.5 - 0.5 * (t / 0.025) ** 2)  # derivative of Gaussian, ~140 ms
        twave = np.exp(-0.5 * ((t - 0.28) / 0.06) ** 2)
        amp = rng.uniform(0.8, 1.5, 12) * rng.choice([-1.0, 1.0], 12)
        beat = amp[:, None] * (qrs - 0.4 * twave)[None, :]
    else:
        template = _complex_template(x, fs, peaks)
        beat = np.zeros((12, b - a))
        k = t0 - int(0.08 * fs) - a
        n = min(template.shape[1], b - a - k)
        beat[:, k : k + n] = template[:, :n]
        # An ectopic P wave: inverted (low atrial focus) or too small to see, 140 ms before the QRS.
        t = (np.arange(b - a) - (t0 - int(0.14 * fs) - a)) / fs
        beat += rng.uniform(-0.12, 0.03) * np.exp(-0.5 * (t / 0.025) ** 2)[None, :]
    _flatten(x, a, b)
    x[:, a:b] += beat * _taper(b - a, int(0.02 * fs))[None, :]
    m[:, a:b] = True


def _pvc(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    _ectopic(x, m, fs, peaks, rng, wide=True)


def _pac(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    _ectopic(x, m, fs, peaks, rng, wide=False)


def _af_segment(x: np.ndarray, m: np.ndarray, fs: int, peaks: np.ndarray, rng: np.random.Generator) -> None:
    """Replace 3–5 s by fibrillation: the record's QRS-T at irregular RR, no P, f waves."""
    rr = float(np.median(np.diff(peaks)))
    template = _complex_template(x, fs, peaks)
    span = rng.uniform(3.0, 5.0) * fs
    starts = [k for k in range(len(peaks) - 1) if peaks[-1] - peaks[k] >= min(span, peaks[-1] - peaks[0])]
    i = int(rng.choice(starts)) if starts else 0
    j = int(np.searchsorted(peaks, peaks[i] + span))
    j = min(max(j, i + 2), len(peaks) - 1)
    a, b = int(peaks[i] + 0.45 * rr), int(peaks[j] - 0.22 * fs)
    _flatten(x, a, b)
    n = b - a
    t = np.arange(n) / fs
    fw = np.zeros(n)
    for _ in range(3):  # f waves: a few 4–8 Hz components with wandering amplitude
        f = rng.uniform(4.0, 8.0)
        fw += np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi)) * (1 + 0.5 * np.sin(2 * np.pi * 0.3 * t))
    fw /= np.abs(fw).max()
    gain = rng.uniform(0.03, 0.08, 12)
    gain[[_IDX["V1"], _IDX["II"], _IDX["III"], _IDX["aVF"]]] *= 1.6  # f waves are largest in V1 and inferior
    x[:, a:b] += gain[:, None] * fw[None, :] * _taper(n, int(0.05 * fs))[None, :]
    pos = a + int(rng.uniform(0.05, 0.3) * rr)
    while pos + template.shape[1] <= b:
        x[:, pos : pos + template.shape[1]] += template
        pos += int(rr * rng.uniform(0.55, 1.25))
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


_RBBB_LEADS = {"R": ("V1", "V2"), "S": ("I", "aVL", "V5", "V6")}
_LBBB_LEADS = {"R": ("I", "aVL", "V5", "V6"), "S": ("V1", "V2", "V3")}


def _bundle_branch(x: np.ndarray, m: np.ndarray, fs: int, all_peaks: np.ndarray, rng: np.random.Generator) -> None:
    """Widen every QRS with a right or left bundle-branch pattern in its characteristic leads."""
    right = bool(rng.integers(0, 2))
    leads = _RBBB_LEADS if right else _LBBB_LEADS
    r_amp, s_amp = (
        (rng.uniform(0.4, 0.9), rng.uniform(0.2, 0.45)) if right else (rng.uniform(0.4, 0.8), rng.uniform(0.5, 1.0))
    )
    r_at, s_at = (0.09, 0.08) if right else (0.07, 0.06)
    pre, post = int(0.04 * fs), int(0.15 * fs)
    for r in all_peaks:
        a, b = max(0, int(r) - pre), min(x.shape[1], int(r) + post)
        t = (np.arange(a, b) - r) / fs
        taper = _taper(b - a, int(0.01 * fs))
        for lead in leads["R"]:
            x[_IDX[lead], a:b] += r_amp * np.exp(-0.5 * ((t - r_at) / 0.022) ** 2) * taper
        for lead in leads["S"]:
            x[_IDX[lead], a:b] -= s_amp * np.exp(-0.5 * ((t - s_at) / 0.025) ** 2) * taper
        for lead in (*leads["R"], *leads["S"]):
            m[_IDX[lead], a:b] = True


def _av_block(x: np.ndarray, m: np.ndarray, fs: int, all_peaks: np.ndarray, rng: np.random.Generator) -> None:
    """First degree (every P earlier by 100–140 ms) or, at rates too fast for that, second degree."""
    rr = np.diff(all_peaks)
    shift = int(rng.uniform(0.10, 0.14) * fs)
    p_lo, p_hi = int(0.26 * fs), int(0.06 * fs)  # the P wave lies 260–60 ms before R
    # Room for the earlier P: after the previous T (R + 420 ms) on the shortest cycle.
    if rr.min() - int(0.42 * fs) - p_lo >= shift:
        for r in all_peaks[1:]:
            a, b = int(r) - p_lo - shift, int(r) - p_hi
            p_wave = x[:, a + shift : b].copy()
            p_wave -= np.linspace(p_wave[:, 0], p_wave[:, -1], p_wave.shape[1]).T
            _flatten(x, a, b)
            x[:, a : b - shift] += p_wave * _taper(p_wave.shape[1], int(0.01 * fs))[None, :]
            m[:, a:b] = True
        return
    inner = all_peaks[(all_peaks > all_peaks[0] + fs) & (all_peaks < all_peaks[-1] - fs)]
    r = int(inner[rng.integers(0, len(inner))]) if len(inner) else int(all_peaks[len(all_peaks) // 2])
    nxt = int(all_peaks[np.searchsorted(all_peaks, r) + 1])
    a, b = r - p_hi, int(r + min(0.45 * fs, 0.6 * (nxt - r)))
    _flatten(x, a, b)
    m[:, r - p_lo : b] = True


INJECTORS: dict[str, Callable[..., None]] = {
    "pvc": _pvc,
    "pac": _pac,
    "af_segment": _af_segment,
    "st_change": _st_change,
    "t_inversion": _t_inversion,
    "bundle_branch": _bundle_branch,
    "av_block": _av_block,
    "lead_reversal": _lead_reversal,
    "baseline_wander": _baseline_wander,
    "muscle_noise": _muscle_noise,
}
# Findings over the whole record act on every beat, not only those well inside the view.
_WHOLE_RECORD = frozenset({"bundle_branch", "av_block"})


def inject(record: EcgRecord, kind: str, seed: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (signal with the anomaly, bool mask (12, n)) or None if the ECG has too few beats."""
    x = np.nan_to_num(record.signal.astype(np.float64))
    fs = record.sample_rate_hz
    peaks = _beats_in_view(x, fs)
    if len(peaks) < 4:
        return None
    mask = np.zeros_like(x, dtype=bool)
    rng = np.random.default_rng([seed, ANOMALY_TYPES.index(kind)])
    if kind in _WHOLE_RECORD:
        # Every beat of the recording that has room for its P wave and QRS window.
        allp = detect_r_peaks(bandpass(x, fs), fs)
        peaks = allp[(allp > int(0.5 * fs)) & (allp < x.shape[1] - int(0.5 * fs))]
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


def record_view_start_ms(n_samples: int, rate_hz: int) -> float:
    """Return where ``mask_to_record_view``'s view starts in the recording, in ms."""
    n250 = int(round(n_samples * DETECTOR_RATE_HZ / rate_hz))
    return max(0, (n250 - RECORD_SAMPLES) // 2) * 1000.0 / DETECTOR_RATE_HZ


Evidence = Callable[[np.ndarray, int], list]


def build_cases(
    records: list[EcgRecord], seed: int = 0, kinds: tuple[str, ...] = ANOMALY_TYPES, evidence: Evidence | None = None
) -> dict[str, tuple[dict[str, np.ndarray], np.ndarray, list[int], list[list]]]:
    """Return {type: (stacked detector inputs, masks (n, 12, L), source record indices, evidence)}.

    ``evidence(signal, rate_hz)`` (optional) is called on each injected signal; its results are
    returned in record order (empty lists without it).
    """
    cases = {}
    for kind in kinds:
        items, masks, src, found = [], [], [], []
        for i, rec in enumerate(records):
            out = inject(rec, kind, seed + i)
            if out is None:
                continue
            signal, mask = out
            items.append(detector_inputs(signal, rec.sample_rate_hz))
            masks.append(mask_to_record_view(mask, rec.sample_rate_hz))
            src.append(i)
            found.append(evidence(signal, rec.sample_rate_hz) if evidence else [])
        cases[kind] = (stack_detector_inputs(items), np.stack(masks), src, found)
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
    candidates = np.unique(np.quantile(pooled, np.linspace(0.5, 0.995, 40)))
    scores = [
        np.mean([mean_dice(mp, mk, v, t) for mp, mk, v in zip(maps, masks, valid, strict=True)]) for t in candidates
    ]
    return float(candidates[int(np.argmax(scores))])


def valid_points(arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Return bool (n, 12, L): valid lead x valid sample."""
    return arrays["lead_valid"][:, :, None] & arrays["sample_valid"][:, None, :]


def load_normals(index_df, limit: int = 0) -> list[EcgRecord]:  # type: ignore[no-untyped-def]
    """Load the NORM-only records of an index (optionally the first ``limit``)."""
    from training.data.ptbxl import load_ptbxl_record

    rows = index_df[index_df["label"] == "normal"]
    if limit:
        rows = rows.head(limit)
    return [load_ptbxl_record(Path(row["root"]), row) for _, row in rows.iterrows()]
