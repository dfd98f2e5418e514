"""Atrial activity between the QRS complexes: dominant atrial frequency, organization, amplitude.

:func:`atrial_activity` ``(beats) -> AtrialActivity | None`` (None when there are too few usable
leads or beats). Over II, III, aVF and V1, where flutter and fibrillation waves are largest:

1. QRS cancellation: each beat's QRS (R − 60 ms … R + 80 ms) is replaced by the straight line
   between the samples bounding it. Only the QRS is removed, not a whole QRS-T template: in
   flutter with fixed 2:1 or 4:1 conduction the F waves are phase-locked to the QRS, so a
   median-beat (QRST) template contains them and subtracting it would cancel the flutter too.
2. The residual is band-passed 2–12 Hz and its Welch power spectrum (4 s segments, 0.24 Hz
   bins) summed over the leads.
3. ``dominant_hz``: the spectral peak in 3–12 Hz (below 3 Hz residual T waves dominate);
   ``organization``: the share of the 3–12 Hz power within ±0.3 Hz of the peak and of its first harmonic (a flutter sawtooth: most power in
   these two lines; fibrillation: spread); ``amplitude_mv``: the peak-to-peak amplitude of a
   sinusoid carrying the peak-line power of the largest lead.

Atrial flutter is a dominant frequency of 3.7–6.0 Hz (220–360/min), organized, above noise,
without conducted P waves; the threshold on ``organization`` was chosen on PTB-XL folds 1–9
(docs/models/measurements.md, "Atrial flutter").
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import signal as sps

from inference.clinical.beats import Beats
from inference.preprocessing import LEADS_12

ATRIAL_LEADS = ("II", "III", "aVF", "V1")
_QRS_PRE_S, _QRS_POST_S = 0.06, 0.08
_BAND = (2.0, 12.0)
# The peak and organization are taken over 3–12 Hz: below 3 Hz the residual T waves dominate
# (their fundamental is the ventricular rate), which hides 4:1 flutter at 75/min.
_PEAK_BAND = (3.0, 12.0)
_LINE_HZ = 0.3  # ± half-width of the peak and harmonic lines
_FS = 100  # the residual is analysed at 100 Hz (cost: 12 Hz is the highest frequency of interest)
_SEGMENT_S = 4.0
_MIN_SECONDS = 6.0

# Atrial flutter criteria (see the module docstring).
FLUTTER_HZ = (3.7, 6.0)
FLUTTER_ORGANIZATION = 0.7  # chosen on PTB-XL folds 1–9 (AFLT 0.89–0.98, AFIB ≤ 0.48)
FLUTTER_MIN_MV = 0.05  # F waves smaller than 50 µV are not told from noise


@dataclass(frozen=True)
class AtrialActivity:
    """Dominant atrial frequency (Hz), its organization (0–1) and amplitude (mV peak-to-peak)."""

    dominant_hz: float
    organization: float
    amplitude_mv: float

    @property
    def rate_bpm(self) -> float:
        """Return the atrial rate per minute."""
        return 60.0 * self.dominant_hz

    @property
    def flutter(self) -> bool:
        """Return True when the activity meets the atrial flutter criteria (P waves aside)."""
        return (
            FLUTTER_HZ[0] <= self.dominant_hz <= FLUTTER_HZ[1]
            and self.organization >= FLUTTER_ORGANIZATION
            and self.amplitude_mv >= FLUTTER_MIN_MV
        )


def _blank_qrs(x: np.ndarray, r_peaks: np.ndarray, rate_hz: int) -> np.ndarray:
    """Return ``x`` (leads, n) with each QRS window replaced by a straight line."""
    out = x.copy()
    n = x.shape[1]
    pre, post = int(_QRS_PRE_S * rate_hz), int(_QRS_POST_S * rate_hz)
    for r in r_peaks:
        a, b = max(0, int(r) - pre), min(n - 1, int(r) + post)
        if b <= a:
            continue
        w = np.linspace(0.0, 1.0, b - a + 1)
        out[:, a : b + 1] = out[:, a : a + 1] * (1.0 - w) + out[:, b : b + 1] * w
    return out


def atrial_spectrum(beats: Beats) -> tuple[np.ndarray, np.ndarray] | None:
    """Return (frequencies, per-lead Welch PSD) of the QRS-cancelled atrial leads, or None."""
    rows = [LEADS_12.index(n) for n in ATRIAL_LEADS if beats.lead_usable[LEADS_12.index(n)]]
    if not rows or len(beats.r_peaks) < 3 or beats.duration_s < _MIN_SECONDS:
        return None
    x = _blank_qrs(beats.signal[rows], beats.r_peaks, beats.rate_hz)
    step = beats.rate_hz // _FS
    sos = sps.butter(4, _BAND, btype="bandpass", fs=beats.rate_hz, output="sos")
    x = sps.sosfiltfilt(sos, x, axis=-1)[:, ::step]
    nper = int(_SEGMENT_S * _FS)
    if x.shape[1] < nper:
        return None
    freqs, psd = sps.welch(x, fs=_FS, nperseg=nper, noverlap=nper // 2, axis=-1)
    return freqs, psd


def atrial_activity(beats: Beats) -> AtrialActivity | None:
    """Return the atrial activity of an analysed ECG, or None when it cannot be estimated."""
    spectrum = atrial_spectrum(beats)
    if spectrum is None:
        return None
    return activity_from_spectrum(*spectrum)


def activity_from_spectrum(freqs: np.ndarray, psd: np.ndarray) -> AtrialActivity | None:
    """Return dominant frequency, organization and amplitude from per-lead PSDs (leads, freqs)."""
    band = (freqs >= _PEAK_BAND[0]) & (freqs <= _PEAK_BAND[1])
    total = psd.sum(axis=0)
    band_power = float(total[band].sum())
    if band_power <= 0.0:
        return None
    peak = float(freqs[band][int(np.argmax(total[band]))])
    line = band & (np.abs(freqs - peak) <= _LINE_HZ)
    harmonic = band & (np.abs(freqs - 2.0 * peak) <= _LINE_HZ)
    organization = float(total[line | harmonic].sum() / band_power)
    # Welch density × bin width = power of the line; a sinusoid of power P has amplitude √(2P).
    df = float(freqs[1] - freqs[0])
    line_power = float(psd[:, line].sum(axis=1).max() * df)
    amplitude = 2.0 * float(np.sqrt(2.0 * line_power))
    return AtrialActivity(round(peak, 2), round(organization, 3), round(amplitude, 3))
