"""Measure each lead's median beat (amplitudes, R-peak time, rsR', ST, T) and the frontal axes.

Amplitudes are against the PR-segment baseline of the median beat (AHA/ACC/HRS 2009 part V:
the isoelectric reference is the PR segment, the QRS onset level); times are from the global
QRS onset, so leads are compared on one time axis.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import find_peaks

from inference.clinical.beats import RATE_HZ, Beats
from inference.clinical.types import LeadMeasurements
from inference.preprocessing import LEADS_12

_MS = 1000.0 / RATE_HZ
# Hexaxial reference system: frontal angle of each limb lead; the augmented leads are √3/2 as
# large as the bipolar ones for the same heart vector (Goldberger: aVF = II − I/2).
_LIMB_DEG = {"I": 0.0, "II": 60.0, "III": 120.0, "aVR": -150.0, "aVL": -30.0, "aVF": 90.0}
_LIMB_GAIN = {"I": 1.0, "II": 1.0, "III": 1.0, "aVR": np.sqrt(3) / 2, "aVL": np.sqrt(3) / 2, "aVF": np.sqrt(3) / 2}
# Deflections smaller than 50 µV are not called waves (the resolution at which q, r' and notches
# are read on paper at 10 mm/mV; AHA/ACC/HRS 2009 part V uses 0.05 mV as the smallest wave).
_MIN_WAVE_MV = 0.05


def _full_base(beats: Beats, base: np.ndarray) -> np.ndarray:
    out = np.full(len(LEADS_12), np.nan)
    out[beats.lead_usable] = base
    return out


def frontal_axis(beats: Beats, start: int, stop: int, base: np.ndarray) -> tuple[float | None, str]:
    """Return (frontal axis in degrees, "") of a wave's net area over [start, stop), or (None, why).

    Least squares over every usable limb lead, which is the hexaxial reading done on all six
    leads at once; two leads with independent directions are the minimum.
    """
    b12 = _full_base(beats, base)
    rows, areas = [], []
    for lead, deg in _LIMB_DEG.items():
        i = LEADS_12.index(lead)
        if not beats.lead_usable[i]:
            continue
        g = _LIMB_GAIN[lead]
        a = np.deg2rad(deg)
        rows.append([g * np.cos(a), g * np.sin(a)])
        areas.append(float(np.sum(beats.median[i, start:stop] - b12[i])) * _MS)
    if len(rows) < 2 or np.linalg.matrix_rank(np.asarray(rows), tol=1e-6) < 2:
        return None, "fewer than two usable limb leads of different direction"
    vec, *_ = np.linalg.lstsq(np.asarray(rows), np.asarray(areas), rcond=None)
    if np.hypot(*vec) < 1e-6:
        return None, "net area is zero (indeterminate axis)"
    return round(float(np.degrees(np.arctan2(vec[1], vec[0]))), 1), ""


def _extrema(x: np.ndarray) -> list[tuple[int, float]]:
    """Return the significant extrema (index, value) of a QRS segment (baseline 0), in time order."""
    pad = np.concatenate([[0.0], x, [0.0]])  # a wave cut by the QRS boundary still counts
    up, _ = find_peaks(pad, height=_MIN_WAVE_MV, prominence=_MIN_WAVE_MV)
    down, _ = find_peaks(-pad, height=_MIN_WAVE_MV, prominence=_MIN_WAVE_MV)
    return sorted((int(i) - 1, float(pad[i])) for i in np.concatenate([up, down]))


def _lead(
    beats: Beats, i: int, base: float, q_on: int, q_off: int, p: tuple[int, int] | None, t: tuple[int, int] | None
) -> LeadMeasurements:
    med = beats.median[i] - base
    qrs = med[q_on:q_off]
    ext = _extrema(qrs)
    pos = [e for e in ext if e[1] > 0]
    r_amp = max((e[1] for e in pos), default=0.0)
    r_idx = max(pos, key=lambda e: e[1])[0] if pos else None
    q_amp = 0.0
    q_dur = 0.0
    if ext and ext[0][1] < 0 and pos:
        q_amp = ext[0][1]
        first_pos = pos[0][0]
        crossing = np.flatnonzero(qrs[:first_pos] >= 0)
        q_dur = _ms(crossing[0] if len(crossing) else first_pos)
    after = qrs[r_idx:] if r_idx is not None else qrs
    s_amp = min(0.0, float(after.min())) if len(after) else 0.0
    # rsR' (or notched R): a positive wave following a negative one that follows a positive one.
    signs = [1 if e[1] > 0 else -1 for e in ext]
    r_prime = any(signs[k : k + 3] == [1, -1, 1] for k in range(len(signs) - 2)) or any(
        signs[k : k + 2] == [1, 1] for k in range(len(signs) - 1)
    )
    term = float(np.mean(qrs[-int(0.04 * RATE_HZ) :])) if len(qrs) >= 5 else None
    st = st_j = None
    st_idx = q_off + int(0.06 * RATE_HZ)
    if st_idx < beats.median_st.shape[1]:
        st_base = float(np.median(beats.median_st[i, q_on - 5 : q_on - 1]))
        st = float(beats.median_st[i, st_idx] - st_base)
        st_j = float(beats.median_st[i, q_off] - st_base)
    t_amp = None
    if t is not None:
        seg = med[q_off + int(0.04 * RATE_HZ) : t[1] + 1]
        if len(seg):
            t_amp = float(seg[np.argmax(np.abs(seg))])
    p_amp = None
    if p is not None:
        seg = med[p[0] : p[1] + 1]
        p_amp = float(seg[np.argmax(np.abs(seg))])
    return LeadMeasurements(
        p_amplitude_mv=_r(p_amp),
        q_amplitude_mv=_r(q_amp),
        q_duration_ms=round(q_dur, 1),
        r_amplitude_mv=_r(r_amp),
        s_amplitude_mv=_r(s_amp),
        r_prime=bool(r_prime),
        r_peak_time_ms=round(_ms(r_idx), 1) if r_idx is not None else None,
        terminal_qrs_mv=_r(term),
        qrs_area_mv_ms=_r(float(qrs.sum()) * _MS, 2),
        qrs_min_mv=_r(min(0.0, float(qrs.min())) if len(qrs) else None),
        st_j60_mv=_r(st),
        st_j_mv=_r(st_j),
        t_amplitude_mv=_r(t_amp),
    )


def _ms(samples: float) -> float:
    return float(samples) * _MS


def _r(v: float | None, digits: int = 3) -> float | None:
    return None if v is None else round(float(v), digits)


def lead_measurements(
    beats: Beats,
    names: list[str],
    q_on: int,
    q_off: int,
    base: np.ndarray,
    p: tuple[int, int] | None,
    t: tuple[int, int] | None,
) -> dict[str, LeadMeasurements]:
    """Return {lead: LeadMeasurements} for the usable leads ``names`` (``base`` in the same order)."""
    return {
        name: _lead(beats, LEADS_12.index(name), float(b), q_on, q_off, p, t)
        for name, b in zip(names, base, strict=True)
    }
