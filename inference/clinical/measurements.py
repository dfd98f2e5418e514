"""Measure one ECG the way computerized ECG programs do: global intervals from all leads' median beats.

:func:`measure_ecg` ``(signal, rate_hz, leads) -> EcgMeasurements`` never raises on a bad signal:
a value that cannot be measured stays None and ``not_measured`` says why.

Method (GE 12SL / Glasgow style, on :mod:`inference.clinical.beats` median beats at 500 Hz):
- QRS onset/offset: one global pair from the spatial velocity (sum over usable leads of the
  absolute slope) of the median beats, so the earliest onset and latest offset over all leads
  are found together (AHA/ACC/HRS 2007 part II: global intervals, not one lead's);
- P wave: a bump of the spatial P magnitude before the QRS; its onset/offset from the same
  velocity method; per beat, the pre-QRS segment is matched against the median P
  (``p_wave_fraction``);
- T end: tangent method on the spatial T magnitude (the steepest descent of the T loop's
  magnitude extrapolated to the baseline), one robust global value;
- rhythm: RR intervals of all beats (ventricular rate); irregularity as median |ΔRR| / median RR
  over intervals between dominant beats, so isolated ectopics do not make sinus irregular;
- axes: least-squares frontal vector of the net areas over every usable limb lead;
- per-lead amplitudes against the PR-segment baseline (see :mod:`.lead_measures`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.clinical.atrial import atrial_activity
from inference.clinical.beats import (
    CLASS_NORMAL,
    CLASS_SUPRA,
    CLASS_VENTRICULAR,
    MEDIAN_SAMPLES,
    RATE_HZ,
    Beats,
    beats_analyse,
)
from inference.clinical.lead_measures import frontal_axis, lead_measurements
from inference.clinical.types import EcgMeasurements
from inference.preprocessing import LEADS_12

MIN_MEASURE_SECONDS = 4.0  # fewer than ~3–4 beats at normal rates: no representative beat
MIN_DOMINANT_BEATS = 3
_MS = 1000.0 / RATE_HZ
# Velocity thresholds relative to the QRS maximum slope: QRS boundaries are where the spatial
# slope falls to a few percent of its peak, above the noise floor of the isoelectric segments.
_QRS_VEL_FRACTION = 0.04
_ST_T_SLOPE = 2.0  # the QRS ends where its slope is no longer twice the ST-T slope
_MIN_P_MV = 0.04  # a P wave smaller than 40 µV in every lead is not distinguishable from noise
# Per-beat pre-QRS correlation with the median P counted as "P present": the same P wave in
# two beats correlates > 0.8 unless noise is as large as the P wave itself.
_P_MATCH = 0.8
_R_PRIME_MV = 0.1  # V1/V2 still ≥ 0.1 mV above baseline at the global QRS end: an unfinished R'
_P_ON_FRACTION = 0.15  # P onset: back within 15% of the P height above its local floor (noise-relative)
_P_FOOT = int(0.006 * RATE_HZ)  # then at most 6 ms back to the foot
_P_SIZE = 1.6
# Irregularity above which RR is "irregular": successive differences > 8% of the cycle; AF
# detectors use a normalized RMSSD > ~0.1 (Dash et al. 2009), our median-based statistic is
# smaller than an RMS one for the same rhythm.
IRREGULAR = 0.08


def _ms(samples: float) -> float:
    return float(samples) * _MS


def _velocity(med: np.ndarray) -> np.ndarray:
    """Return the spatial velocity (sum of |slope| over leads), lightly smoothed (6 ms)."""
    v = np.abs(np.diff(med, axis=1)).sum(axis=0)
    v = np.concatenate([v, v[-1:]])
    return np.convolve(v, np.ones(3) / 3, mode="same")


def _qrs_bounds(med: np.ndarray, r: int) -> tuple[int, int] | None:
    """Return the global (onset, offset) sample indices of the QRS in the median beats."""
    v = _velocity(med)
    lo, hi = r - int(0.15 * RATE_HZ), r + int(0.20 * RATE_HZ)
    core = slice(r - int(0.06 * RATE_HZ), r + int(0.06 * RATE_HZ))
    vmax = float(v[core].max())
    if vmax <= 0:
        return None
    # Noise floor: the quietest 10% of the beat (TP / PR segments) must not be called QRS.
    floor = float(np.quantile(v, 0.1))
    thr = max(_QRS_VEL_FRACTION * vmax, 3.0 * floor)
    # The QRS ends where its slope is no longer clearly above repolarization's: twice the median
    # slope of the ST-T region (large and steep in bundle-branch block and ST elevation).
    st_t = v[r + int(0.20 * RATE_HZ) : r + int(0.32 * RATE_HZ)]
    thr_off = max(thr, _ST_T_SLOPE * float(np.median(st_t))) if len(st_t) else thr
    peak = core.start + int(np.argmax(v[core]))
    below = np.flatnonzero(v[lo:peak] < thr)
    onset = lo + int(below[-1]) + 1 if len(below) else lo
    # Offset: the slope must stay below threshold for 16 ms, so the short slowing at the nadir
    # of an S wave between R and R' (bundle-branch block) does not end the QRS.
    hold = int(0.016 * RATE_HZ)
    last_high = peak
    for i in range(peak, hi):
        if v[i] >= thr_off:
            last_high = i
        elif i - last_high >= hold:
            break
    return onset, last_high + 1


def _terminal_r_prime(beats: Beats, q_on: int, q_off: int, base: np.ndarray) -> int:
    """Return the QRS offset moved to the end of a slow terminal R' in V1/V2, if one is still up.

    In RBBB the terminal R' of V1/V2 is slow (late right-ventricular activation); the global
    slope falls below the threshold on it while V1/V2 are still well above the PR baseline, which
    cuts the QRS short. The QRS then ends where that lead's own slope falls to 10% of its QRS
    maximum for 16 ms (the end of the R' descent), at most 200 ms after QRS onset.
    """
    use = beats.lead_usable
    full_base = np.full(len(LEADS_12), np.nan)
    full_base[use] = base
    end = q_off
    hold = int(0.016 * RATE_HZ)
    stop = min(beats.median.shape[1] - 1, q_on + int(0.20 * RATE_HZ))
    for name in ("V1", "V2"):
        i = LEADS_12.index(name)
        if not use[i]:
            continue
        x = beats.median[i] - full_base[i]
        qrs = x[q_on:q_off]
        # Still up, and an R' that comes down within the next 80 ms: its peak at most 60 ms on and
        # the lead back below half that peak (a normal V1–V2 ST elevation rises into the T wave).
        seg = x[q_off : min(len(x), q_off + int(0.08 * RATE_HZ))]
        if len(qrs) < 5 or len(seg) < 5 or x[q_off] < _R_PRIME_MV or x[q_off] < 0.3 * float(qrs.max()):
            continue
        pk = int(np.argmax(seg))
        if pk > int(0.06 * RATE_HZ) or float(seg[pk:].min()) > 0.5 * float(seg[pk]):
            continue
        v = np.abs(np.diff(x))
        v = np.convolve(v, np.ones(3) / 3, mode="same")
        thr = 0.1 * float(v[q_on:q_off].max())
        last_high = q_off
        for k in range(q_off, stop):
            if v[k] >= thr:
                last_high = k
            elif k - last_high >= hold:
                break
        end = max(end, last_high + 1)
    return end


def _baseline(med: np.ndarray, onset: int) -> np.ndarray:
    """Return each lead's PR-segment level (10–2 ms before QRS onset)."""
    return np.median(med[:, onset - int(0.010 * RATE_HZ) : onset - int(0.002 * RATE_HZ)], axis=1)


def _p_wave(med: np.ndarray, onset: int, base: np.ndarray, earliest: int = 1) -> tuple[int, int] | None:
    """Return the (onset, offset) of the median P wave, or None if there is no P wave.

    ``earliest``: the previous beat's T end in median-beat samples (the P search starts after it).
    """
    lo = max(1, earliest, onset - int(0.32 * RATE_HZ))
    hi = onset - int(0.02 * RATE_HZ)
    seg = med[:, lo:hi] - base[:, None]
    if seg.shape[1] < 10:
        return None
    amp = np.abs(seg).max(axis=1)
    # A P wave is seen in at least two leads (one lead alone is noise or an electrode artefact).
    if np.sum(amp >= _MIN_P_MV) < min(2, len(amp)):
        return None
    mag = np.sqrt((seg**2).sum(axis=0))
    peak = int(np.argmax(mag))
    # A P wave is a bump: the magnitude must fall to below half its peak on both sides
    # within the window (a ramp into the QRS or a T wave tail is not a P wave).
    left, right = mag[:peak], mag[peak:]
    if not (len(left) and left.min() < 0.5 * mag[peak] and right.min() < 0.5 * mag[peak]):
        return None
    # Boundaries: where the magnitude is back within 3% of the P height above its lowest level
    # on that side (each side separately: a previous T tail or filter undershoot may lift one).
    floor = float(np.quantile(mag, 0.1))
    if mag[peak] < 2.0 * floor:
        return None  # the "bump" is no larger than the noise: no P wave
    # The P onset lies within 100 ms before the P peak (the first half of a P wave, normal
    # duration < 120 ms, is never that long); searching further reaches the previous T wave.
    reach = max(0, peak - int(0.10 * RATE_HZ))
    near = left[reach:]
    lo_before, lo_after = float(near.min()), float(right.min())
    before = np.flatnonzero(near < lo_before + _P_ON_FRACTION * (mag[peak] - lo_before))
    if not len(before):
        return None
    before = before + reach
    after = np.flatnonzero(right < lo_after + 0.03 * (mag[peak] - lo_after))
    first = int(before[-1]) + 1 if len(before) else 0
    # The onset threshold is relative to the P height above the local floor (noise and the
    # previous T/U tail set that floor): at 3% it was read 20-40 ms early on real median beats
    # (false PR > 200 ms); at 15% it is within ~10 ms of a smooth P's exact start. Then a short
    # walk back (at most 6 ms) to where the magnitude stops falling; further back lies the
    # previous T or U wave's tail, which also falls towards the P.
    stop = max(0, first - _P_FOOT)
    while first > stop and mag[first - 1] < mag[first]:
        first -= 1
    p_on = lo + first
    p_off = lo + peak + (int(after[0]) if len(after) else len(right))
    width = _ms(p_off - p_on)
    if width < 40 or width > 200:  # outside any P wave (normal < 120 ms; 40 ms is a notch)
        return None
    return p_on, p_off


def _t_end(
    med: np.ndarray, qrs_off: int, base: np.ndarray, limit: int, peak_limit: int | None = None
) -> tuple[int, int] | None:
    """Return (T peak, T end) by the tangent method on the spatial T magnitude.

    ``peak_limit``: the latest median-beat sample where the T peak may lie (see ``measure_beats``).
    """
    lo = qrs_off + int(0.04 * RATE_HZ)
    hi = min(limit, med.shape[1] - 1)
    if hi - lo < int(0.1 * RATE_HZ):
        return None
    mag = np.sqrt(((med[:, lo:hi] - base[:, None]) ** 2).sum(axis=0))
    mag = np.convolve(np.pad(mag, 2, mode="edge"), np.ones(5) / 5, mode="valid")
    # The T peak: the largest magnitude beyond the ST segment's first 60 ms.
    start = int(0.06 * RATE_HZ)
    if len(mag) <= start + 5:
        return None
    stop = len(mag) if peak_limit is None else max(start + 5, min(len(mag), peak_limit - lo))
    peak = start + int(np.argmax(mag[start:stop]))
    # The descending limb: from the peak until the magnitude first falls below 20% of it (past
    # that, the next beat's P wave or noise could offer a steeper slope that is not the T's).
    tail = mag[peak:]
    low = np.flatnonzero(tail < 0.2 * tail[0])
    end_limb = int(low[0]) + 1 if len(low) else len(tail)
    # Or, once below half the peak, where the magnitude stops falling: a raised floor (noise, a
    # flat T) keeps it above 20%, and the limb must not run on into the next P wave's slopes.
    half = np.flatnonzero(tail < 0.5 * tail[0])
    if len(half):
        j = int(half[0])
        while j + 1 < len(tail) and tail[j + 1] < tail[j]:
            j += 1
        end_limb = min(end_limb, j + 1)
    limb = tail[:end_limb]
    slope = np.diff(limb)
    if len(slope) < 3 or slope.min() >= 0:
        return None
    k = int(np.argmin(slope))  # steepest descent after the peak
    # Baseline of the tangent: the magnitude's floor after T (TP segment), not zero, because
    # noise keeps the spatial magnitude above zero.
    level = float(np.quantile(tail[: int(low[0]) + int(0.1 * RATE_HZ)] if len(low) else tail, 0.05))
    x0 = peak + k
    end = x0 + (mag[x0] - level) / -slope[k]
    end = int(round(min(end, len(mag) - 1)))
    return lo + peak, lo + end


def _p_fraction(beats: Beats, p_on: int, qrs_on: int, t_end: int | None) -> float | None:
    """Return the share of beats whose pre-QRS segment correlates with the median P (±20 ms).

    A beat whose previous T wave (its previous R + the median R-to-T-end) reaches into the P
    segment is not assessable and not counted (short cycles in AF, early PACs).
    """
    use = beats.lead_usable
    r = beats.median_r
    template = beats.median[use, p_on:qrs_on]
    template = template - template.mean(axis=1, keepdims=True)
    if template.size == 0 or not np.any(template):
        return None
    shift = int(0.02 * RATE_HZ)
    x = beats.signal[use]
    hits = total = 0
    prev = np.concatenate([[-(10**9)], beats.r_peaks[:-1]])
    for peak, before, cls in zip(beats.r_peaks, prev, beats.beat_class, strict=True):
        if cls not in (CLASS_NORMAL, CLASS_SUPRA):
            continue
        start = peak - r + p_on
        if t_end is not None and before + (t_end - r) > start - shift:
            continue
        stop = peak - r + qrs_on
        if start - shift < 0 or stop + shift > x.shape[1]:
            continue
        total += 1
        best = -1.0
        for s in range(-shift, shift + 1, 2):
            seg = x[:, start + s : stop + s]
            seg = seg - seg.mean(axis=1, keepdims=True)
            den = np.linalg.norm(seg) * np.linalg.norm(template)
            # Same size too: averaging attenuates waves that are not time-locked to the QRS
            # (fibrillatory waves), so a beat carrying such activity is much larger than the
            # median "P"; the median P plus noise of its own size is only √2 larger.
            if den > 0 and np.linalg.norm(seg) <= _P_SIZE * np.linalg.norm(template):
                best = max(best, float((seg * template).sum() / den))
        hits += best >= _P_MATCH
    return hits / total if total else None


def _rhythm(beats: Beats, out: dict[str, object], why: dict[str, str]) -> None:
    """Fill heart rate, RR and irregularity from all beats (ectopic-coupled intervals excluded)."""
    rr = beats.rr_ms
    if len(rr) < 2:
        why["heart_rate_bpm"] = f"{len(beats.r_peaks)} QRS complexes detected: no rate"
        return
    out["heart_rate_bpm"] = 60000.0 / float(rr.mean())
    out["rr_mean_ms"] = float(rr.mean())
    cls = beats.beat_class
    # An interval counts for regularity only if both its beats are dominant (N–N intervals).
    nn = (cls[:-1] == CLASS_NORMAL) & (cls[1:] == CLASS_NORMAL)
    rr_use = rr[nn] if nn.sum() >= 4 else rr
    consecutive = nn[:-1] & nn[1:] if nn.sum() >= 4 else np.ones(len(rr) - 1, dtype=bool)
    d = np.abs(np.diff(rr))[consecutive]
    if len(d) < 2:
        why["rr_irregularity"] = "fewer than 3 consecutive RR intervals between dominant beats"
        return
    irr = float(np.median(d) / np.median(rr_use))
    out["rr_range_ms"] = float(rr_use.max() - rr_use.min())
    out["rr_irregularity"] = irr
    out["rhythm_regular"] = irr <= IRREGULAR


def measure_beats(beats: Beats) -> EcgMeasurements:
    """Return the measurements of an ECG already analysed by :func:`beats_analyse`."""
    why: dict[str, str] = {}
    out: dict[str, object] = {}
    unusable = dict(beats.unusable_leads)
    base_fields = {"duration_s": round(beats.duration_s, 3), "unusable_leads": unusable, "beats": len(beats.r_peaks)}
    if beats.duration_s < MIN_MEASURE_SECONDS:
        reason = f"recording too short: {beats.duration_s:.1f} s < {MIN_MEASURE_SECONDS:.0f} s"
        for name in ("heart_rate_bpm", "rr_irregularity", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg"):
            why[name] = reason
        return EcgMeasurements(**base_fields, not_measured=why)  # type: ignore[arg-type]
    if beats.flags:
        why["signal"] = "; ".join(beats.flags)
    _rhythm(beats, out, why)
    atrial = atrial_activity(beats)
    if atrial is None:
        why["atrial_rate_bpm"] = "atrial activity not estimable (too few beats, seconds or atrial leads)"
    else:
        out["atrial_rate_bpm"] = atrial.rate_bpm
        out["atrial_organization"] = atrial.organization
        out["atrial_amplitude_mv"] = atrial.amplitude_mv
    cls = beats.beat_class
    out["pvc_count"] = int(np.sum(cls == CLASS_VENTRICULAR))
    n_dom = beats.n_dominant
    if n_dom < MIN_DOMINANT_BEATS:
        reason = f"{n_dom} dominant beats: no representative beat"
        for name in ("pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg", "p_wave_present"):
            why[name] = reason
        return _finish(out, why, base_fields, {})
    use = beats.lead_usable
    med = beats.median[use]
    r = beats.median_r
    bounds = _qrs_bounds(med, r)
    if bounds is None:
        why["qrs_ms"] = "no QRS slope in the median beats"
        return _finish(out, why, base_fields, {})
    q_on, q_off = bounds
    base = _baseline(med, q_on)
    q_off = _terminal_r_prime(beats, q_on, q_off, base)
    out["qrs_ms"] = _ms(q_off - q_on)
    rr_dom = _dominant_rr(beats)
    rr_med = float(np.median(beats.rr_ms)) if len(beats.rr_ms) else None
    limit = MEDIAN_SAMPLES - 1
    if rr_med is not None:
        # T must end before the next beat's P/QRS: within 90% of the cycle after this R.
        limit = min(limit, r + int(0.9 * rr_med / _MS))
    # The T peak lies within 0.45 RR + 100 ms of R: the QT is at most about half the cycle plus
    # 200 ms at any rate (even QTc 600 ms), and the T peak precedes the T end by ~100 ms. Past
    # that, a larger "peak" is the next beat's P wave or a U wave over a low, flat T.
    peak_limit = r + int((0.45 * rr_dom + 100.0) / _MS) if rr_dom else None
    t = _t_end(med, q_off, base, limit, peak_limit)
    if t is None:
        why["qt_ms"] = "no T wave end found in the median beats"
    else:
        out["qt_ms"] = _ms(t[1] - q_on)
        if rr_dom:
            out["qtc_ms"] = float(out["qt_ms"]) / (rr_dom / 1000.0) ** (1.0 / 3.0)  # type: ignore[arg-type]
    # The previous beat's T end, one dominant cycle earlier, bounds the P search at fast rates.
    earliest = t[1] - int(rr_dom / _MS) + int(0.02 * RATE_HZ) if (t and rr_dom) else 1
    p = _p_wave(med, q_on, base, earliest)
    if p is not None:
        frac = _p_fraction(beats, p[0], q_on, t[1] if t else None)
        out["p_wave_fraction"] = frac
        out["p_wave_present"] = frac is not None and frac >= 0.5
        if out["p_wave_present"]:
            out["pr_ms"] = _ms(q_on - p[0])
        else:
            why["pr_ms"] = f"a P-like wave precedes only {100 * (frac or 0):.0f}% of QRS complexes"
    else:
        out["p_wave_present"] = False
        out["p_wave_fraction"] = 0.0
        why["pr_ms"] = "no P wave in the median beat"
        why["p_axis_deg"] = "no P wave"
    names = [lead for lead, ok in zip(LEADS_12, use, strict=True) if ok]
    per_lead = lead_measurements(beats, names, q_on, q_off, base, p, t)
    # Frontal axes over every usable limb lead (least squares on the hexaxial reference system).
    waves: dict[str, tuple[int, int] | None] = {
        "qrs_axis_deg": (q_on, q_off),
        "p_axis_deg": p if out.get("p_wave_present") else None,
        "t_axis_deg": (q_off, t[1]) if t else None,
    }
    for key, wave in waves.items():
        if key in why:
            continue
        if wave is None:
            why[key] = "wave not found"
            continue
        axis, reason = frontal_axis(beats, wave[0], wave[1], base)
        if axis is None:
            why[key] = reason
        else:
            out[key] = axis
    if p is None or not out.get("p_wave_present"):
        why.setdefault("pac_count", "no consistent P waves: premature atrial beats cannot be told")
    else:
        out["pac_count"] = int(np.sum(cls == CLASS_SUPRA))
    return _finish(out, why, base_fields, per_lead)


def _dominant_rr(beats: Beats) -> float | None:
    """Return the median RR (ms) between dominant beats (the cycle the median beat belongs to)."""
    cls = beats.beat_class
    nn = (cls[:-1] == CLASS_NORMAL) & (cls[1:] == CLASS_NORMAL)
    rr = beats.rr_ms[nn] if nn.any() else beats.rr_ms
    return float(np.median(rr)) if len(rr) else None


def _finish(out: dict[str, object], why: dict[str, str], base: dict[str, object], leads: dict) -> EcgMeasurements:
    for name in ("heart_rate_bpm", "pr_ms", "qrs_ms", "qt_ms", "qtc_ms", "qrs_axis_deg", "t_axis_deg"):
        if out.get(name) is None and name not in why:
            why[name] = "not measurable (see other reasons)"
    clean = {k: (round(v, 1) if isinstance(v, float) else v) for k, v in out.items()}
    for name in ("atrial_organization", "atrial_amplitude_mv"):
        if out.get(name) is not None:
            clean[name] = round(float(out[name]), 3)  # type: ignore[arg-type]
    if "rr_irregularity" in out:
        clean["rr_irregularity"] = round(float(out["rr_irregularity"]), 4)  # type: ignore[arg-type]
    if out.get("p_wave_fraction") is not None:
        clean["p_wave_fraction"] = round(float(out["p_wave_fraction"]), 3)  # type: ignore[arg-type]
    return EcgMeasurements(**clean, **base, leads=leads, not_measured=why)  # type: ignore[arg-type]


def measure_ecg(signal: np.ndarray, rate_hz: float, leads: Sequence[str] = LEADS_12) -> EcgMeasurements:
    """Return the global and per-lead measurements of a raw ECG (mV, NaN = missing); never raise."""
    try:
        return measure_beats(beats_analyse(signal, rate_hz, leads))
    except Exception as exc:  # a bug must not cost the ECG its report: say so instead
        return EcgMeasurements(not_measured={"all": f"measurement failed: {type(exc).__name__}: {exc}"})
