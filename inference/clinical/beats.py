"""Find, classify and average the beats of one ECG: the common ground of every clinical measurement.

Public API (stable; ``measurements`` and ``intended_use`` build on it):

- :func:`beats_analyse` ``(signal, rate_hz, leads) -> Beats``: never raises on a bad signal.
- :class:`Beats` (frozen): everything at :data:`RATE_HZ` (500 Hz), leads in ``LEADS_12`` order.

  ``signal``       float64 (12, n): 0.5–40 Hz (morphology, timing); 0 on unusable leads.
  ``signal_st``    float64 (12, n): 0.05–40 Hz (ST level: AHA 2007 asks ≥0.05 Hz low cut-off).
  ``lead_usable``  bool (12,); ``unusable_leads`` {lead: reason} ("missing", "flat", "noisy", ...).
  ``r_peaks``      int64 (beats,): the QRS fiducial of each beat (sample index, aligned by
                   template cross-correlation, so the same point of the QRS in every beat).
  ``beat_class``   '<U1' (beats,): ``N`` dominant, ``S`` premature with the dominant shape
                   (PAC-like), ``V`` different shape or wide (PVC-like), ``X`` excluded (noisy,
                   too close to an edge to cut a window, or an unclassifiable shape).
  ``correlation``  float64 (beats,): QRS correlation with the dominant template (all leads).
  ``rr_ms``        float64 (beats - 1,): successive R–R intervals.
  ``median``       float64 (12, MEDIAN_SAMPLES): per-lead median of the dominant (``N``) beats
                   of ``signal``; NaN rows for unusable leads or when there is no ``N`` beat.
  ``median_st``    the same from ``signal_st``.
  ``median_r``     index of the R fiducial inside ``median`` (= MEDIAN_PRE).
  ``duration_s``   seconds analysed (at most :data:`MAX_SECONDS`); ``flags``: technical notes.

Why this design: computerized ECG programs (GE 12SL, Glasgow, HES) measure on a representative
(median) beat per lead built from the dominant beats, because averaging removes noise and
ectopics and makes the onsets/offsets of all leads comparable on one time axis.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import signal as sps

from inference.preprocessing import LEADS_12, assess_quality, interpolate_nans, reorder_leads, resample

RATE_HZ = 500
MAX_SECONDS = 60.0  # longer recordings (Holter-like, PTB Diagnostic) are analysed on their first minute
MIN_SECONDS = 2.0  # below this there are not two beats to compare
MEDIAN_PRE = 225  # 450 ms before R: room for P onset with a PR up to ~350 ms
MEDIAN_POST = 325  # 650 ms after R: room for T end with a QT up to ~700 ms
MEDIAN_SAMPLES = MEDIAN_PRE + MEDIAN_POST

CLASS_NORMAL = "N"
CLASS_SUPRA = "S"
CLASS_VENTRICULAR = "V"
CLASS_EXCLUDED = "X"

# QRS comparison window around R (ms): covers a wide (up to ~200 ms) QRS without reaching P or T.
_QRS_WIN = (int(0.10 * RATE_HZ), int(0.12 * RATE_HZ))
_ALIGN_MAX = int(0.04 * RATE_HZ)  # realign each beat to the template within ±40 ms
# A beat is "premature" if it comes ≥15% earlier than the local reference RR: the usual
# prematurity criterion of arrhythmia analysers (MIT-BIH/AAMI EC57 practice uses 10–20%).
_PREMATURE = 0.85
# Same-shape threshold: QRS complexes of one focus correlate > 0.9 across leads; aberrant or
# ventricular beats usually < 0.8. Between the two, width decides.
_SAME_SHAPE = 0.90
_DIFF_SHAPE = 0.80
_MIN_DIFF_LEADS = 3  # a different shape must show in at least 3 leads (not one noisy lead)
_MIN_SLOPE_RATIO = 1.0 / 3.0
_WIDE_MS = 120.0  # QRS ≥ 120 ms: the adult limit of a ventricular / bundle-branch QRS
# A lead whose beat-to-beat residual exceeds this share of its median QRS amplitude is noisy:
# above it the median beat itself is unreliable for amplitude criteria (AHA 2007 part I).
_NOISE_RATIO = 0.5
_MIN_QRS_PTP_MV = 0.02  # a lead whose median QRS is below 20 µV carries no measurable QRS


@dataclass(frozen=True)
class Beats:
    """Beats of one ECG at 500 Hz in LEADS_12 order (see the module docstring for every field)."""

    signal: np.ndarray
    signal_st: np.ndarray
    lead_usable: np.ndarray
    r_peaks: np.ndarray
    beat_class: np.ndarray
    correlation: np.ndarray
    rr_ms: np.ndarray
    median: np.ndarray
    median_st: np.ndarray
    median_r: int = MEDIAN_PRE
    rate_hz: int = RATE_HZ
    duration_s: float = 0.0
    unusable_leads: dict[str, str] = field(default_factory=dict)
    flags: tuple[str, ...] = ()

    @property
    def n_dominant(self) -> int:
        """Return how many beats went into the median beat."""
        return int(np.sum(self.beat_class == CLASS_NORMAL))


def _empty(n: int, duration_s: float, unusable: dict[str, str], flags: list[str], usable: np.ndarray) -> Beats:
    nan_median = np.full((len(LEADS_12), MEDIAN_SAMPLES), np.nan)
    return Beats(
        signal=np.zeros((len(LEADS_12), n)),
        signal_st=np.zeros((len(LEADS_12), n)),
        lead_usable=usable,
        r_peaks=np.zeros(0, dtype=np.int64),
        beat_class=np.zeros(0, dtype="<U1"),
        correlation=np.zeros(0),
        rr_ms=np.zeros(0),
        median=nan_median,
        median_st=nan_median.copy(),
        duration_s=duration_s,
        unusable_leads=unusable,
        flags=tuple(flags),
    )


def _filter(x: np.ndarray, low_hz: float, order: int) -> np.ndarray:
    """Zero-phase high-pass at ``low_hz`` then 40 Hz low-pass (muscle noise, mains harmonics)."""
    n = x.shape[-1]
    pad = min(n - 1, 3 * RATE_HZ)
    hp = sps.butter(order, low_hz, btype="highpass", fs=RATE_HZ, output="sos")
    lp = sps.butter(4, 40.0, btype="lowpass", fs=RATE_HZ, output="sos")
    return sps.sosfiltfilt(lp, sps.sosfiltfilt(hp, x, axis=-1, padlen=pad), axis=-1, padlen=pad)


def _windows(x: np.ndarray, centres: np.ndarray, pre: int, post: int) -> np.ndarray:
    """Cut (beats, leads, pre+post) windows around ``centres`` (all must fit)."""
    idx = centres[:, None] + np.arange(-pre, post)[None, :]
    return np.transpose(x[:, idx], (1, 0, 2))


def _detect(x: np.ndarray, usable: np.ndarray) -> np.ndarray:
    """Return R-peak candidates from neurokit2 run on the spatial magnitude of the usable leads.

    The spatial magnitude (root sum of squares over leads) has one positive peak per QRS whatever
    the axis or bundle-branch morphology, so a QRS that is small or biphasic in lead II (or a
    missing lead II) does not cost beats.
    """
    import neurokit2 as nk  # noqa: PLC0415 neurokit2: slow import, beats only

    mag = np.sqrt(np.sum(x[usable] ** 2, axis=0))
    try:
        _, info = nk.ecg_peaks(mag, sampling_rate=RATE_HZ, method="neurokit")
        peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    except Exception:  # neurokit2 raises assorted errors on flat or noise-only input
        return np.zeros(0, dtype=np.int64)
    # Move each candidate to the magnitude maximum within ±60 ms (neurokit2 may sit on an edge).
    half = int(0.06 * RATE_HZ)
    out = []
    for p in peaks:
        lo, hi = max(0, p - half), min(len(mag), p + half + 1)
        out.append(lo + int(np.argmax(mag[lo:hi])))
    peaks = np.unique(np.asarray(out, dtype=np.int64))
    # Two detections closer than 200 ms are one QRS (absolute refractory period).
    keep: list[int] = []
    for p in peaks:
        if keep and p - keep[-1] < int(0.2 * RATE_HZ):
            if mag[p] > mag[keep[-1]]:
                keep[-1] = int(p)
            continue
        keep.append(int(p))
    return np.asarray(keep, dtype=np.int64)


def _align(x: np.ndarray, peaks: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Shift each peak (±40 ms) to maximise the multi-lead QRS correlation with ``template``."""
    pre, post = _QRS_WIN
    n = x.shape[1]
    out = peaks.copy()
    t = template - template.mean(axis=1, keepdims=True)
    for k, p in enumerate(peaks):
        lo = p - pre - _ALIGN_MAX
        hi = p + post + _ALIGN_MAX
        if lo < 0 or hi > n:
            continue
        seg = x[:, lo:hi]
        # Cross-correlation over all leads at once (sum over leads of per-lead correlations).
        scores = sum(np.correlate(seg[i], t[i], mode="valid") for i in range(len(seg)))
        out[k] = lo + int(np.argmax(scores)) + pre
    return out


def _qrs_width_ms(beats: np.ndarray) -> np.ndarray:
    """Return a rough per-beat QRS width: time the spatial slope stays above 20% of its peak."""
    slope = np.sqrt(np.sum(np.diff(beats, axis=-1) ** 2, axis=1))  # (beats, samples)
    thr = 0.2 * slope.max(axis=1, keepdims=True)
    above = slope > thr
    first = np.argmax(above, axis=1)
    last = above.shape[1] - 1 - np.argmax(above[:, ::-1], axis=1)
    return (last - first) * 1000.0 / RATE_HZ


def _corr(beats: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Return the Pearson correlation of each beat's concatenated leads with the template's."""
    b = beats.reshape(len(beats), -1)
    b = b - b.mean(axis=1, keepdims=True)
    t = template.ravel() - template.mean()
    den = np.linalg.norm(b, axis=1) * np.linalg.norm(t)
    return np.where(den > 0, b @ t / np.where(den > 0, den, 1.0), 0.0)


def _max_slope(beats: np.ndarray) -> np.ndarray:
    """Return each beat's largest spatial slope (root sum of squares of the lead slopes)."""
    return np.sqrt(np.sum(np.diff(beats, axis=-1) ** 2, axis=1)).max(axis=1)


def _lead_corr(beats: np.ndarray, template: np.ndarray) -> np.ndarray:
    """Return the per-lead Pearson correlation (beats, leads) of each beat with the template."""
    b = beats - beats.mean(axis=2, keepdims=True)
    t = template - template.mean(axis=1, keepdims=True)
    den = np.linalg.norm(b, axis=2) * np.linalg.norm(t, axis=1)[None, :]
    return np.where(den > 0, (b * t[None]).sum(axis=2) / np.where(den > 0, den, 1.0), 1.0)


def _local_rr(rr: np.ndarray) -> np.ndarray:
    """Return, per beat, the reference cycle its coupling interval is compared with.

    The median of the neighbouring intervals that do not touch the beat (up to four before its
    coupling interval, four after its following one), so a slowly varying sinus rate (sinus
    arrhythmia) is not called premature and an isolated ectopic does not set its own reference.
    """
    n = len(rr) + 1
    ref = np.full(n, float(np.median(rr)) if len(rr) else np.inf)
    for k in range(1, n):
        near = [rr[j] for j in (*range(k - 5, k - 1), *range(k + 1, k + 5)) if 0 <= j < len(rr)]
        if len(near) >= 2:
            ref[k] = float(np.median(near))
    return ref


def _classify(x: np.ndarray, peaks: np.ndarray, usable: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (aligned peaks, classes, correlations) of the beats."""
    n = x.shape[1]
    pre, post = _QRS_WIN
    classes = np.full(len(peaks), CLASS_EXCLUDED, dtype="<U1")
    corr = np.zeros(len(peaks))
    inner = (peaks - pre - _ALIGN_MAX >= 0) & (peaks + post + _ALIGN_MAX <= n)
    if inner.sum() == 0:
        return peaks, classes, corr
    xu = x[usable]
    first = _windows(xu, peaks[inner], pre, post)
    template = np.median(first, axis=0)
    peaks = peaks.copy()
    peaks[inner] = _align(xu, peaks[inner], template)
    qrs = _windows(xu, peaks[inner], pre, post)
    # Dominant template: the median of beats resembling the overall median (twice, so a
    # minority of ectopics cannot pull it), i.e. the shape most beats share.
    c = _corr(qrs, np.median(qrs, axis=0))
    core = c >= np.quantile(c, 0.5) if len(c) > 2 else np.ones(len(c), dtype=bool)
    template = np.median(qrs[core], axis=0)
    c = _corr(qrs, template)
    width = _qrs_width_ms(qrs)
    ref_width = float(np.median(width[c >= _SAME_SHAPE])) if np.any(c >= _SAME_SHAPE) else float(np.median(width))
    # A QRS is the steepest deflection of the beat: a detection whose spatial slope is under a third
    # of the dominant QRS's is a T wave, a P wave or an artefact, not a beat of its own, and the
    # cycles around it are measured between the real beats on either side.
    steep = _max_slope(qrs)
    ref_steep = float(np.median(steep[c >= _SAME_SHAPE])) if np.any(c >= _SAME_SHAPE) else float(np.median(steep))
    not_qrs = steep < _MIN_SLOPE_RATIO * ref_steep
    real = np.ones(len(peaks), dtype=bool)
    real[np.flatnonzero(inner)[not_qrs]] = False
    rr = np.diff(peaks[real]).astype(float)
    pos = np.cumsum(real) - 1  # index of each beat among the real beats
    # The first two beats have no preceding cycle to compare with, the last none following: their
    # prematurity cannot be confirmed (a beat cut by the recording's edge is often spurious).
    coupling = np.concatenate([[np.inf], rr])[pos][inner]
    following = np.concatenate([rr, [0.0]])[pos][inner]
    # The dominant cycle just before the coupling interval (AHA/ACC/HRS 2009 part II: a premature
    # complex comes earlier than the next expected sinus beat); RR varying gradually (sinus
    # arrhythmia) changes little from one cycle to the next, so it is not premature against it.
    preceding = np.concatenate([[0.0, 0.0], rr[:-1]])[pos][inner]
    local = _local_rr(rr)[pos][inner]
    # Premature against both the preceding cycle and the local reference, and followed by a longer
    # cycle (the pause after an ectopic: compensatory for a PVC, non-compensatory for a PAC). An
    # extra detection on an artefact comes early too but is not followed by a pause.
    premature = (coupling < _PREMATURE * local) & (coupling < _PREMATURE * preceding) & (following > coupling)
    premature &= ~not_qrs
    # Wider than the dominant QRS by ≥40 ms, or ≥120 ms while the dominant is narrow: a
    # ventricular origin or aberrant conduction.
    wide = (width > ref_width + 40.0) | ((width >= _WIDE_MS) & (ref_width < _WIDE_MS - 20.0))
    # Different shape in several leads: noise in one lead lowers the all-lead correlation of a
    # normal beat, a ventricular focus changes the QRS in most leads.
    low_leads = (_lead_corr(qrs, template) < _DIFF_SHAPE).sum(axis=1)
    shape_differs = (c < _DIFF_SHAPE) & (low_leads >= min(_MIN_DIFF_LEADS, qrs.shape[1]))
    cls = np.full(int(inner.sum()), CLASS_EXCLUDED, dtype="<U1")
    same = (c >= _SAME_SHAPE) & ~wide
    cls[same & ~premature] = CLASS_NORMAL
    cls[same & premature] = CLASS_SUPRA
    different = shape_differs | wide
    cls[different & premature] = CLASS_VENTRICULAR
    # Between 0.8 and 0.9 (or low in fewer leads) and not wide: same focus with noise if on time,
    # PAC if premature.
    middle = ~same & ~different
    cls[middle & ~premature] = CLASS_NORMAL
    cls[middle & premature] = CLASS_SUPRA
    cls[not_qrs] = CLASS_EXCLUDED
    classes[inner] = cls
    corr[inner] = c
    return peaks, classes, corr


def _medians(x: np.ndarray, peaks: np.ndarray, take: np.ndarray, usable: np.ndarray) -> np.ndarray:
    out = np.full((len(LEADS_12), MEDIAN_SAMPLES), np.nan)
    fits = take & (peaks - MEDIAN_PRE >= 0) & (peaks + MEDIAN_POST <= x.shape[1])
    if fits.sum() == 0:
        return out
    w = _windows(x, peaks[fits], MEDIAN_PRE, MEDIAN_POST)
    med = np.median(w, axis=0)
    out[usable] = med[usable]
    return out


def _noisy_leads(x: np.ndarray, peaks: np.ndarray, take: np.ndarray, usable: np.ndarray) -> dict[int, str]:
    """Return {lead index: reason} for leads whose dominant beats disagree too much or lack a QRS."""
    pre, post = _QRS_WIN
    fits = take & (peaks - MEDIAN_PRE >= 0) & (peaks + MEDIAN_POST <= x.shape[1])
    if fits.sum() < 3:
        return {}
    w = _windows(x, peaks[fits], MEDIAN_PRE, MEDIAN_POST)
    med = np.median(w, axis=0)
    qrs_ptp = np.ptp(med[:, MEDIAN_PRE - pre : MEDIAN_PRE + post], axis=1)
    resid = np.median(np.sqrt(np.mean((w - med[None]) ** 2, axis=2)), axis=0)
    out: dict[int, str] = {}
    for i in np.flatnonzero(usable):
        if qrs_ptp[i] < _MIN_QRS_PTP_MV:
            out[int(i)] = "no measurable QRS"
        elif resid[i] > _NOISE_RATIO * qrs_ptp[i]:
            out[int(i)] = f"noisy (beat-to-beat residual {resid[i]:.2f} mV vs QRS {qrs_ptp[i]:.2f} mV)"
    return out


def beats_analyse(signal: np.ndarray, rate_hz: float, leads: Sequence[str] = LEADS_12) -> Beats:
    """Return the beats, their classes and per-lead median beats of a raw ECG; never raise.

    ``signal`` is (len(leads), n) in mV, NaN where samples are missing; any subset of LEADS_12.
    A signal that cannot be analysed (unknown leads, too short, no usable lead, no beat) comes
    back with no beats, NaN medians and the reason in ``flags`` / ``unusable_leads``.
    """
    usable = np.zeros(len(LEADS_12), dtype=bool)
    try:
        raw = reorder_leads(signal, leads)
    except ValueError as exc:
        return _empty(0, 0.0, {lead: "missing" for lead in LEADS_12}, [f"unreadable: {exc}"], usable)
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        return _empty(0, 0.0, {}, [f"invalid sampling rate {rate_hz}"], usable)
    raw = raw[:, : int(MAX_SECONDS * rate_hz)]
    duration = raw.shape[1] / float(rate_hz)
    flags: list[str] = []
    quality = assess_quality(raw, rate_hz)
    nan_frac = np.isnan(raw).mean(axis=1)
    unusable: dict[str, str] = {}
    for i, lead in enumerate(LEADS_12):
        if not quality.lead_valid[i]:
            unusable[lead] = "missing" if nan_frac[i] > 0.5 else "flat (disconnected electrode)"
    usable = quality.lead_valid.copy()
    n500 = int(round(duration * RATE_HZ))
    if duration < MIN_SECONDS:
        flags.append(f"too short: {duration:.2f} s < {MIN_SECONDS} s")
        return _empty(n500, duration, unusable, flags, usable)
    if not usable.any():
        flags.append("no usable lead")
        return _empty(n500, duration, unusable, flags, usable)
    x = interpolate_nans(np.where(usable[:, None], raw, 0.0))
    x = x - np.median(x, axis=1, keepdims=True)
    x = resample(x, rate_hz, RATE_HZ)
    # 0.5 Hz, 2nd order, zero phase: removes wander; AHA 2007 accepts up to 0.67 Hz for
    # zero-phase filters without ST distortion. The ST signal keeps the 0.05 Hz cut-off.
    morph = _filter(x, 0.5, 2) * usable[:, None]
    st = _filter(x, 0.05, 1) * usable[:, None]
    peaks = _detect(morph, usable)
    if len(peaks) < 2:
        flags.append("no beats detected" if len(peaks) == 0 else "one beat only")
        return replace(
            _empty(morph.shape[1], duration, unusable, flags, usable),
            signal=morph,
            signal_st=st,
            r_peaks=peaks,
            beat_class=np.full(len(peaks), CLASS_EXCLUDED, dtype="<U1"),
            correlation=np.zeros(len(peaks)),
        )
    peaks, classes, corr = _classify(morph, peaks, usable)
    order = np.argsort(peaks)
    peaks, classes, corr = peaks[order], classes[order], corr[order]
    noisy = _noisy_leads(morph, peaks, classes == CLASS_NORMAL, usable)
    if noisy and len(noisy) < usable.sum():
        for i, reason in noisy.items():
            unusable[LEADS_12[i]] = reason
            usable[i] = False
        morph = morph * usable[:, None]
        st = st * usable[:, None]
        # Re-detect without the noisy leads: they may have produced or hidden beats.
        peaks = _detect(morph, usable)
        if len(peaks) >= 2:
            peaks, classes, corr = _classify(morph, peaks, usable)
            order = np.argsort(peaks)
            peaks, classes, corr = peaks[order], classes[order], corr[order]
        else:
            classes = np.full(len(peaks), CLASS_EXCLUDED, dtype="<U1")
            corr = np.zeros(len(peaks))
    dominant = classes == CLASS_NORMAL
    if not dominant.any():
        flags.append("no dominant beat")
    return Beats(
        signal=morph,
        signal_st=st,
        lead_usable=usable,
        r_peaks=peaks,
        beat_class=classes,
        correlation=corr,
        rr_ms=np.diff(peaks) * 1000.0 / RATE_HZ,
        median=_medians(morph, peaks, dominant, usable),
        median_st=_medians(st, peaks, dominant, usable),
        duration_s=duration,
        unusable_leads=unusable,
        flags=tuple(flags),
    )
