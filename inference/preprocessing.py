"""Turn a raw 12-lead ECG into model inputs; training and serving both call these functions.

numpy, scipy and neurokit2 only (no torch): the Django/Celery side imports this module to build
the arrays it sends to Triton, and the training code imports the very same functions, so a model
never sees inputs prepared differently from the ones it was trained on.

Detector pipeline (:func:`detector_inputs`), following the published detector's preprocessing
(docs/architecture.md §4) with two documented changes:
1. quality checks on the raw signal (missing, flat, clipped leads, NaN stretches, length);
2. short NaN stretches are interpolated, unusable leads are zeroed and flagged;
3. resampling to 250 Hz (the published model runs at 500 Hz; 250 Hz halves the cost and keeps the
   1–25 Hz band well below Nyquist);
4. zero-phase 1–25 Hz Butterworth band-pass (as published);
5. a centred 9.6 s record view (shorter recordings are zero-padded and flagged);
6. robust per-lead scaling (median / 1st–99th percentile range) instead of min-max: it removes
   amplitude like min-max does, so mV records and the z-scored ptb-xl-extra records land on the
   same scale, but one spike (muscle noise, pacing artefact) cannot squash the whole lead.
   Consequence: absolute voltage is discarded, so voltage-only findings (LVH by voltage, low
   voltage) are invisible to the detector;
7. R peaks with neurokit2 and 0.96 s beat views around them (R at 1/3 of the window), plus an
   R-peak track (1 at each R peak) that tells the record view where beats are. No detectable
   beat is not an error: ``beat_valid`` is all False, the track is empty, and the ECG is scored
   on the record view alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np
from scipy import signal as sps

LEADS_12 = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

DETECTOR_RATE_HZ = 250
RECORD_SAMPLES = 2400  # 9.6 s at 250 Hz (published record view)
BEAT_SAMPLES = 240  # 0.96 s at 250 Hz (published beat view)
BEAT_PRE_SAMPLES = 80  # R peak sits 0.32 s into the beat window, leaving room for P and T
MAX_BEATS = 8  # beats per ECG fed to the model (a 9.6 s record at 50 bpm still has 8)
MIN_SECONDS = 2.0  # below this there is no beat to compare with: refuse rather than guess
LONG_SECONDS = 12.0  # above this only the centred 9.6 s is analysed, and the result says so
BANDPASS_HZ = (1.0, 25.0)
_MAX_NAN_FRACTION = 0.5  # a lead with more missing samples than this is treated as missing
_FLAT_PTP = 1e-3  # peak-to-peak below this (mV or z-units) means a disconnected / flat lead
_CLIP_RUN_SECONDS = 0.03  # a plateau at the lead's extreme this long means ADC saturation


@dataclass(frozen=True)
class QualityReport:
    """Signal-quality findings for one ECG: human-readable flags plus the usable-lead mask."""

    flags: tuple[str, ...]
    lead_valid: np.ndarray  # bool (12,)


@dataclass(frozen=True)
class DetectorInputs:
    """Exactly what the detector consumes for one ECG (shapes at 250 Hz)."""

    record: np.ndarray  # float32 (12, RECORD_SAMPLES)
    beats: np.ndarray  # float32 (MAX_BEATS, 12, BEAT_SAMPLES), zero where beat_valid is False
    beat_valid: np.ndarray  # bool (MAX_BEATS,)
    lead_valid: np.ndarray  # bool (12,)
    sample_valid: np.ndarray  # bool (RECORD_SAMPLES,), False on zero padding
    r_track: np.ndarray  # float32 (RECORD_SAMPLES,): 1.0 at detected R peaks, else 0 (beat timing for the model)
    r_peaks: np.ndarray  # int64 R-peak sample indices inside the record view
    flags: tuple[str, ...] = field(default_factory=tuple)


def reorder_leads(signal: np.ndarray, leads: Sequence[str]) -> np.ndarray:
    """Return a float64 (12, n) array in LEADS_12 order; absent leads are NaN rows.

    Lead names match case-insensitively ("AVR" == "aVR"). Raises ValueError if ``signal`` is not
    2-D, if its first axis does not match ``leads``, or if no lead name is recognised.
    """
    arr = np.asarray(signal, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[0] != len(leads):
        raise ValueError(f"signal shape {arr.shape} does not match {len(leads)} lead names {list(leads)}")
    upper = [name.strip().upper() for name in leads]
    out = np.full((len(LEADS_12), arr.shape[1]), np.nan)
    found = 0
    for i, lead in enumerate(LEADS_12):
        if lead.upper() in upper:
            out[i] = arr[upper.index(lead.upper())]
            found += 1
    if found == 0:
        raise ValueError(f"no known lead among {list(leads)}; expected names from {LEADS_12}")
    return out


def _longest_run(mask: np.ndarray) -> int:
    """Return the length of the longest run of True in a 1-D bool array."""
    if not mask.any():
        return 0
    padded = np.concatenate([[0], mask.astype(np.int8), [0]])
    edges = np.flatnonzero(np.diff(padded))
    return int((edges[1::2] - edges[::2]).max())


def assess_quality(signal: np.ndarray, rate_hz: float) -> QualityReport:
    """Return quality flags for a (12, n) raw signal (NaN = missing) and the usable-lead mask.

    Flags: ``missing_leads:<names>``, ``flat_leads:<names>``, ``nan_stretches:<names>``,
    ``clipped_leads:<names>`` (clipped leads stay usable), ``single_lead``.
    """
    flags: list[str] = []
    nan = np.isnan(signal)
    nan_frac = nan.mean(axis=1)
    missing = nan_frac > _MAX_NAN_FRACTION
    filled = np.where(nan, np.nanmedian(np.where(missing[:, None], 0.0, signal), axis=1, keepdims=True), signal)
    flat = ~missing & (np.ptp(filled, axis=1) < _FLAT_PTP)
    clip_run = max(3, round(_CLIP_RUN_SECONDS * rate_hz))
    clipped = np.zeros(len(signal), dtype=bool)
    for i, lead in enumerate(filled):
        if missing[i] or flat[i]:
            continue
        clipped[i] = max(_longest_run(lead >= lead.max()), _longest_run(lead <= lead.min())) >= clip_run
    stretches = ~missing & (nan_frac > 0)
    for name, mask in (
        ("missing_leads", missing),
        ("flat_leads", flat),
        ("nan_stretches", stretches),
        ("clipped_leads", clipped),
    ):
        if mask.any():
            flags.append(f"{name}:{','.join(LEADS_12[i] for i in np.flatnonzero(mask))}")
    lead_valid = ~missing & ~flat
    if lead_valid.sum() == 1:
        flags.append("single_lead")
    return QualityReport(flags=tuple(flags), lead_valid=lead_valid)


def interpolate_nans(signal: np.ndarray) -> np.ndarray:
    """Return a copy with NaNs linearly interpolated per lead (all-NaN leads become 0)."""
    out = np.array(signal, dtype=np.float64)
    x = np.arange(out.shape[1])
    for lead in out:
        bad = np.isnan(lead)
        if bad.all():
            lead[:] = 0.0
        elif bad.any():
            lead[bad] = np.interp(x[bad], x[~bad], lead[~bad])
    return out


def resample(signal: np.ndarray, rate_hz: float, target_hz: int) -> np.ndarray:
    """Resample (leads, n) from ``rate_hz`` to ``target_hz`` with a polyphase anti-alias filter."""
    if rate_hz <= 0:
        raise ValueError(f"sampling rate must be positive, got {rate_hz}")
    if abs(rate_hz - target_hz) < 1e-9:
        return np.asarray(signal, dtype=np.float64)

    frac = Fraction(target_hz / rate_hz).limit_denominator(1000)
    return sps.resample_poly(signal, frac.numerator, frac.denominator, axis=-1)


def bandpass(signal: np.ndarray, rate_hz: float, band: tuple[float, float] = BANDPASS_HZ) -> np.ndarray:
    """Apply a zero-phase 4th-order Butterworth band-pass along the last axis."""
    sos = sps.butter(4, band, btype="bandpass", fs=rate_hz, output="sos")
    padlen = min(signal.shape[-1] - 1, 3 * rate_hz)
    return sps.sosfiltfilt(sos, signal, axis=-1, padlen=int(padlen))


def scale_leads(signal: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Scale each lead robustly: subtract the median, divide by the 1st–99th percentile range.

    ``valid`` (bool, n) restricts the statistics to real (non-padded) samples. Leads with a zero
    range come back as zeros instead of dividing by zero.
    """
    stats = signal if valid is None else signal[:, valid]
    med = np.median(stats, axis=1, keepdims=True)
    lo, hi = np.percentile(stats, [1.0, 99.0], axis=1, keepdims=True)
    spread = hi - lo
    safe = np.where(spread > 1e-8, spread, 1.0)
    return np.where(spread > 1e-8, (signal - med) / safe, 0.0)


def detect_r_peaks(signal: np.ndarray, rate_hz: float, lead_valid: np.ndarray | None = None) -> np.ndarray:
    """Return R-peak sample indices found with neurokit2 on the best usable lead.

    Lead II is preferred (the usual rhythm lead); otherwise the valid lead with the largest
    spread. Returns an empty array when no beat is found or neurokit2 fails on the signal, never
    raising: the caller then scores the record view alone.
    """
    import neurokit2 as nk  # noqa: PLC0415 neurokit2: slow import, R peaks only

    valid = np.ones(len(signal), dtype=bool) if lead_valid is None else lead_valid
    if not valid.any():
        return np.zeros(0, dtype=np.int64)
    lead = 1 if valid[1] else int(np.argmax(np.where(valid, np.ptp(signal, axis=1), -1.0)))
    try:
        _, info = nk.ecg_peaks(
            np.asarray(signal[lead], dtype=np.float64), sampling_rate=int(rate_hz), method="neurokit"
        )
        peaks = np.asarray(info["ECG_R_Peaks"], dtype=np.int64)
    except Exception:  # neurokit2 raises assorted errors on flat or noise-only input
        return np.zeros(0, dtype=np.int64)
    return peaks[(peaks >= 0) & (peaks < signal.shape[1])]


def extract_beats(
    signal: np.ndarray,
    peaks: np.ndarray,
    max_beats: int = MAX_BEATS,
    pre: int = BEAT_PRE_SAMPLES,
    length: int = BEAT_SAMPLES,
) -> tuple[np.ndarray, np.ndarray]:
    """Cut (max_beats, leads, length) windows around R peaks that fit entirely in the signal.

    Beats are taken in time order; slots without a beat are zero with ``valid`` False.
    Returns (beats float32, valid bool (max_beats,)).
    """
    beats = np.zeros((max_beats, signal.shape[0], length), dtype=np.float32)
    valid = np.zeros(max_beats, dtype=bool)
    usable = [p for p in peaks if p - pre >= 0 and p - pre + length <= signal.shape[1]]
    for k, p in enumerate(usable[:max_beats]):
        beats[k] = signal[:, p - pre : p - pre + length]
        valid[k] = True
    return beats, valid


def _fit_record_view(signal: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre-crop or zero-pad (leads, m) to (leads, n); return it and the real-sample mask."""
    m = signal.shape[1]
    if m >= n:
        start = (m - n) // 2
        return signal[:, start : start + n], np.ones(n, dtype=bool)
    out = np.zeros((signal.shape[0], n))
    out[:, :m] = signal
    valid = np.zeros(n, dtype=bool)
    valid[:m] = True
    return out, valid


def detector_inputs(signal: np.ndarray, rate_hz: float, leads: Sequence[str] = LEADS_12) -> DetectorInputs:
    """Build the detector's input arrays from a raw ECG (the one function training and serving share).

    ``signal`` is (len(leads), n) in mV (or any per-lead affine unit, e.g. z-scores), NaN where
    samples are missing. Raises ValueError naming the reason if the recording is shorter than
    2 s or has no usable lead; other problems (missing/flat/clipped leads, NaN stretches,
    padding, truncation) come back as ``flags``.
    """
    raw = reorder_leads(signal, leads)
    seconds = raw.shape[1] / float(rate_hz)
    if seconds < MIN_SECONDS:
        raise ValueError(f"recording too short: {seconds:.2f} s < {MIN_SECONDS} s")
    quality = assess_quality(raw, rate_hz)
    if not quality.lead_valid.any():
        raise ValueError(f"no usable lead (all missing or flat): {', '.join(quality.flags)}")
    flags = list(quality.flags)
    x = interpolate_nans(np.where(quality.lead_valid[:, None], raw, 0.0))
    # Remove the DC offset before filtering so the filter's edge transient does not depend on
    # it: with this, any per-lead affine change of units (mV, z-scores) gives the same input.
    x = x - np.median(x, axis=1, keepdims=True)
    x = bandpass(resample(x, rate_hz, DETECTOR_RATE_HZ), DETECTOR_RATE_HZ)
    if seconds < RECORD_SAMPLES / DETECTOR_RATE_HZ:
        flags.append(f"short_padded:{seconds:.1f}s")
    elif seconds > LONG_SECONDS:
        flags.append(f"long_truncated:{seconds:.1f}s")
    x, sample_valid = _fit_record_view(x, RECORD_SAMPLES)
    x = scale_leads(x, sample_valid) * quality.lead_valid[:, None] * sample_valid[None, :]
    peaks = detect_r_peaks(x[:, sample_valid], DETECTOR_RATE_HZ, quality.lead_valid)
    beats, beat_valid = extract_beats(x, peaks)
    if not beat_valid.any():
        flags.append("no_beats_detected")
    r_track = np.zeros(RECORD_SAMPLES, dtype=np.float32)
    r_track[peaks] = 1.0
    return DetectorInputs(
        record=x.astype(np.float32),
        beats=beats,
        beat_valid=beat_valid,
        lead_valid=quality.lead_valid.copy(),
        sample_valid=sample_valid,
        r_track=r_track,
        r_peaks=peaks,
        flags=tuple(flags),
    )


def stack_detector_inputs(items: Sequence[DetectorInputs]) -> dict[str, np.ndarray]:
    """Stack per-ECG inputs into the batched arrays the model (or Triton) takes."""
    return {
        "record": np.stack([i.record for i in items]),
        "beats": np.stack([i.beats for i in items]),
        "beat_valid": np.stack([i.beat_valid for i in items]),
        "lead_valid": np.stack([i.lead_valid for i in items]),
        "sample_valid": np.stack([i.sample_valid for i in items]),
        "r_track": np.stack([i.r_track for i in items]),
    }


# --- foundation model -------------------------------------------------------------------------
#
# Foundation pipeline (:func:`foundation_inputs`): the same quality checks and NaN handling as the
# detector, then 100 Hz (PTB-XL's low-rate files), a zero-phase 0.5–40 Hz band-pass (the band
# ptb-xl-extra was already filtered with, so those records are not changed by it), a 10 s view
# (centre crop, or zero padding flagged ``short_padded``) and the same robust per-lead scaling,
# which makes the input invariant to any per-lead affine change of units (mV or z-scores).
# Missing or flat leads are zeroed and ``lead_mask`` is False for them: the model is trained
# with random lead subsets, so any subset of leads is accepted and the subset used is reported.

FOUNDATION_RATE_HZ = 100
FOUNDATION_SAMPLES = 1000  # 10 s at 100 Hz
FOUNDATION_BAND_HZ = (0.5, 40.0)


@dataclass(frozen=True)
class FoundationInputs:
    """Exactly what the foundation model consumes for one ECG."""

    signal: np.ndarray  # float32 (12, FOUNDATION_SAMPLES), zero on masked leads and padding
    lead_mask: np.ndarray  # bool (12,): True where the lead is present and usable
    quality: tuple[str, ...] = field(default_factory=tuple)  # quality flags (see assess_quality)

    @property
    def leads_used(self) -> tuple[str, ...]:
        """Names of the leads the model actually saw."""
        return tuple(LEADS_12[i] for i in np.flatnonzero(self.lead_mask))


def foundation_inputs(signal: np.ndarray, rate_hz: float, leads: Sequence[str] = LEADS_12) -> FoundationInputs:
    """Build the foundation model's input from a raw ECG (training, evaluation and serving share it).

    ``signal`` is (len(leads), n) in mV or any per-lead affine unit, NaN where samples are
    missing; any subset of the 12 standard leads may be given. Raises ValueError naming the
    reason if no lead name is recognised, the recording is shorter than 2 s, or no lead is usable.
    """
    raw = reorder_leads(signal, leads)
    seconds = raw.shape[1] / float(rate_hz)
    if seconds < MIN_SECONDS:
        raise ValueError(f"recording too short: {seconds:.2f} s < {MIN_SECONDS} s")
    quality = assess_quality(raw, rate_hz)
    if not quality.lead_valid.any():
        raise ValueError(f"no usable lead (all missing or flat): {', '.join(quality.flags)}")
    flags = list(quality.flags)
    x = interpolate_nans(np.where(quality.lead_valid[:, None], raw, 0.0))
    x = x - np.median(x, axis=1, keepdims=True)
    x = bandpass(resample(x, rate_hz, FOUNDATION_RATE_HZ), FOUNDATION_RATE_HZ, FOUNDATION_BAND_HZ)
    if seconds < FOUNDATION_SAMPLES / FOUNDATION_RATE_HZ - 1e-6:
        flags.append(f"short_padded:{seconds:.1f}s")
    elif seconds > LONG_SECONDS:
        flags.append(f"long_truncated:{seconds:.1f}s")
    x, sample_valid = _fit_record_view(x, FOUNDATION_SAMPLES)
    x = scale_leads(x, sample_valid) * quality.lead_valid[:, None] * sample_valid[None, :]
    return FoundationInputs(
        signal=np.clip(x, -20.0, 20.0).astype(np.float32),
        lead_mask=quality.lead_valid.copy(),
        quality=tuple(flags),
    )
