"""Generate 12-lead synthetic ECGs with known onsets, offsets, intervals and axes.

Each wave (P, Q, R, S, terminal conduction-delay forces, T, ST shift) is a heart vector
(x = leftward, y = inferior, z = anterior) times a finite-support smooth pulse, so every onset
and offset is exact. Leads are projections: limb leads by Einthoven/Goldberger from the frontal
vector (I = x, II = x/2 + y·√3/2, III = II − I, aVR = −(I+II)/2, aVL = I − II/2, aVF = II − I/2),
precordial leads on horizontal-plane unit vectors. The frontal axis of a wave is therefore the
angle of its net area vector (x, y), computed exactly here and returned as ground truth.

Used by the tests of ``inference.clinical`` and by ``training.evaluate_measurements``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from inference.preprocessing import LEADS_12

_SQ3 = np.sqrt(3.0) / 2.0
# Horizontal-plane directions of V1..V6 (degrees from leftward x towards anterior z), the usual
# textbook placement: V1 right parasternal … V6 mid-axillary.
_PRECORDIAL_DEG = (115.0, 95.0, 75.0, 60.0, 35.0, 0.0)


def _pulse(t: np.ndarray, start: float, width: float, skew: float = 0.5) -> np.ndarray:
    """Return a smooth pulse on [start, start+width] (0 outside), peak at ``skew`` of the width."""
    u = (t - start) / width
    out = np.zeros_like(t)
    rise = (u >= 0) & (u < skew)
    fall = (u >= skew) & (u <= 1)
    out[rise] = np.sin(0.5 * np.pi * u[rise] / skew) ** 2
    out[fall] = np.cos(0.5 * np.pi * (u[fall] - skew) / (1 - skew)) ** 2
    return out


def _plateau(t: np.ndarray, start: float, width: float, ramp: float) -> np.ndarray:
    """Return a flat-topped pulse with raised-cosine ramps (for ST-segment shifts)."""
    out = np.clip(np.minimum(t - start, start + width - t) / ramp, 0.0, 1.0)
    return np.sin(0.5 * np.pi * out) ** 2


def _unit(deg: float, z: float = 0.0) -> np.ndarray:
    a = np.deg2rad(deg)
    return np.array([np.cos(a), np.sin(a), z])


def project(vec: np.ndarray) -> np.ndarray:
    """Return the 12 leads (LEADS_12 order) of a heart-vector signal ``vec`` (3, n)."""
    x, y, z = vec
    lead_i = x
    lead_ii = 0.5 * x + _SQ3 * y
    lead_iii = lead_ii - lead_i
    out = [lead_i, lead_ii, lead_iii, -(lead_i + lead_ii) / 2, lead_i - lead_ii / 2, lead_ii - lead_i / 2]
    for deg in _PRECORDIAL_DEG:
        a = np.deg2rad(deg)
        out.append(np.cos(a) * x + np.sin(a) * z)
    return np.stack(out)


@dataclass(frozen=True)
class SyntheticEcg:
    """One synthetic ECG and its ground truth."""

    signal: np.ndarray  # (12, n) mV, NaN rows for missing leads
    rate_hz: int
    leads: tuple[str, ...]
    truth: dict[str, float | int | str | None] = field(default_factory=dict)
    qrs_onsets_s: tuple[float, ...] = ()


def _axis(vec: np.ndarray) -> float:
    """Frontal axis (degrees) of the net area of a (3, n) vector signal, as a clinician reads it."""
    area = vec.sum(axis=1)
    return float(np.degrees(np.arctan2(area[1], area[0])))


def synthesize(
    *,
    rate_hz: int = 500,
    seconds: float = 10.0,
    heart_rate: float = 70.0,
    pr_ms: float = 160.0,
    qrs_ms: float = 90.0,
    qt_ms: float = 380.0,
    qrs_axis_deg: float = 50.0,
    p_axis_deg: float = 55.0,
    t_axis_deg: float = 40.0,
    conduction: str = "normal",  # normal | rbbb | lbbb
    rhythm: str = "sinus",  # sinus | af | junctional | flutter
    flutter_conduction: int = 2,  # flutter: F waves per QRS (2 for 2:1, 4 for 4:1)
    flutter_rate: float = 300.0,  # flutter: atrial rate per minute (typical flutter ~300/min)
    sinus_arrhythmia: float = 0.0,  # relative RR modulation at 0.25 Hz (respiration)
    pac_beats: tuple[int, ...] = (),
    pvc_beats: tuple[int, ...] = (),
    st_vector_mv: tuple[float, float, float] = (0.0, 0.0, 0.0),
    qrs_scale: float = 1.0,
    noise_mv: float = 0.0,
    wander_mv: float = 0.0,
    missing: tuple[str, ...] = (),
    seed: int = 0,
) -> SyntheticEcg:
    """Return a synthetic 12-lead ECG (see the module docstring) and its ground truth.

    ``qrs_ms`` is the total QRS duration (including the terminal delay of a bundle-branch block),
    ``qt_ms`` runs from QRS onset to the end of the T pulse, ``pr_ms`` from P onset to QRS onset.
    """
    rng = np.random.default_rng(seed)
    n = int(seconds * rate_hz)
    t = np.arange(n) / rate_hz
    vec = np.zeros((3, n))
    if rhythm == "flutter":
        # Fixed-ratio block: the ventricles follow every n-th flutter wave (heart_rate is ignored).
        heart_rate = flutter_rate / flutter_conduction
    rr_mean = 60.0 / heart_rate
    # Beat times (QRS onsets).
    onsets: list[float] = []
    kinds: list[str] = []
    time = 0.35 + (pr_ms / 1000.0 if rhythm == "sinus" else 0.0)
    k = 0
    while time < seconds - 0.05:
        onsets.append(time)
        kinds.append("V" if k in pvc_beats else "S" if k in pac_beats else "N")
        k += 1
        if rhythm == "af":
            rr = rr_mean * float(np.clip(1.0 + 0.22 * rng.standard_normal(), 0.55, 1.7))
        else:
            rr = rr_mean * (1.0 + sinus_arrhythmia * np.sin(2 * np.pi * 0.25 * time))
        if k in pac_beats or k in pvc_beats:
            rr *= 0.65  # premature coupling
        elif k - 1 in pvc_beats:
            rr = 2 * rr_mean - 0.65 * rr_mean  # full compensatory pause after a PVC
        time += rr
    qrs = qrs_ms / 1000.0
    qt = qt_ms / 1000.0
    p_dur = 0.10
    qrs_vec = np.zeros((3, n))
    t_vec = np.zeros((3, n))
    p_vec = np.zeros((3, n))
    main = _unit(qrs_axis_deg, -0.55)
    for onset, kind in zip(onsets, kinds, strict=True):
        if kind == "V":
            # Wide bizarre QRS with discordant T and no P (ventricular origin).
            qrs_vec += 1.4 * qrs_scale * np.outer(_unit(qrs_axis_deg + 150, 0.6), _pulse(t, onset, 0.16, 0.4))
            t_vec += 0.45 * np.outer(_unit(qrs_axis_deg - 30, -0.6), _pulse(t, onset + 0.20, 0.24, 0.6))
            continue
        if rhythm == "sinus":
            p_dir = _unit(p_axis_deg + (-80 if kind == "S" else 0), 0.25)
            p_vec += 0.15 * np.outer(p_dir, _pulse(t, onset - pr_ms / 1000.0, p_dur, 0.5))
        if conduction == "lbbb":
            # No septal q (septum activated right-to-left); slow, notched leftward-posterior forces.
            d = _unit(qrs_axis_deg - 10, -1.1)
            qrs_vec += 1.0 * qrs_scale * np.outer(d, _pulse(t, onset, 0.62 * qrs, 0.55))
            qrs_vec += 1.1 * qrs_scale * np.outer(d, _pulse(t, onset + 0.38 * qrs, 0.62 * qrs, 0.45))
            t_dir = _unit(qrs_axis_deg + 180, 1.0)
        else:
            base = qrs if conduction == "normal" else qrs - 0.05  # RBBB adds 50 ms terminal forces
            qrs_vec += 0.25 * qrs_scale * np.outer(_unit(150, 0.8), _pulse(t, onset, 0.3 * base, 0.5))
            qrs_vec += 1.3 * qrs_scale * np.outer(main, _pulse(t, onset + 0.15 * base, 0.6 * base, 0.5))
            qrs_vec += 0.3 * qrs_scale * np.outer(_unit(-120, -0.5), _pulse(t, onset + 0.6 * base, 0.4 * base, 0.5))
            if conduction == "rbbb":
                # Late rightward-anterior forces: R' in V1, broad S in I and V6.
                qrs_vec += 0.7 * qrs_scale * np.outer(_unit(175, 1.3), _pulse(t, onset + base - 0.01, 0.06, 0.5))
            t_dir = _unit(t_axis_deg, 0.45)
        t_start = onset + qrs + 0.35 * (qt - qrs)
        t_vec += 0.35 * np.outer(t_dir, _pulse(t, t_start, onset + qt - t_start, 0.62))
        if any(st_vector_mv):
            # An injury current shifts the whole ST segment from the J point on (the ramp ends there).
            vec += np.outer(np.asarray(st_vector_mv), _plateau(t, onset + qrs - 0.02, 0.65 * (qt - qrs) + 0.02, 0.02))
    if rhythm == "af":
        # Fibrillatory waves: 4–9 Hz activity of drifting frequency, largest in V1 and inferior leads.
        phase = np.cumsum(2 * np.pi * (6.0 + 1.0 * np.sin(2 * np.pi * 0.13 * t + rng.uniform(0, 6))) / rate_hz)
        f = 0.06 * (1 + 0.3 * np.sin(2 * np.pi * 0.37 * t)) * np.sin(phase + rng.uniform(0, 6))
        vec += np.outer(np.array([-0.2, 0.6, 0.9]), f)
    if rhythm == "flutter":
        # Typical (counter-clockwise) flutter: a continuous sawtooth, negative in II, III, aVF (slow
        # descent, fast return) and positive in V1, no isoelectric baseline between F waves.
        phase = (t * flutter_rate / 60.0 + 0.35) % 1.0
        saw = np.where(phase < 0.75, -phase / 0.75, -(1.0 - phase) / 0.25) + 0.5
        vec += np.outer(0.2 * np.array([0.0, 1.0, -0.6]), saw)
    vec += qrs_vec + t_vec + p_vec
    signal = project(vec)
    if noise_mv:
        signal += noise_mv * rng.standard_normal(signal.shape)
    if wander_mv:
        signal += wander_mv * np.sin(2 * np.pi * 0.3 * t + rng.uniform(0, 6, (12, 1)))
    for lead in missing:
        signal[LEADS_12.index(lead)] = np.nan
    ok = [i for i, kind in enumerate(kinds) if kind == "N"]
    rr_all = np.diff(onsets)
    truth: dict[str, float | int | str | None] = {
        "heart_rate_bpm": 60.0 / float(np.mean(rr_all)) if len(rr_all) else None,
        "pr_ms": pr_ms if rhythm == "sinus" else None,
        "qrs_ms": qrs_ms,
        "qt_ms": qt_ms,
        "qrs_axis_deg": _axis(qrs_vec[:, _beat_slice(onsets, ok, qrs, rate_hz, n)]),
        "t_axis_deg": _axis(t_vec[:, _beat_slice(onsets, ok, qt + 0.01, rate_hz, n)]),
        "p_axis_deg": p_axis_deg if rhythm == "sinus" else None,
        "rhythm": rhythm,
        "conduction": conduction,
        "pac_count": len([b for b in pac_beats if b < len(onsets)]),
        "pvc_count": len([b for b in pvc_beats if b < len(onsets)]),
        "beats": len(onsets),
    }
    return SyntheticEcg(signal=signal, rate_hz=rate_hz, leads=LEADS_12, truth=truth, qrs_onsets_s=tuple(onsets))


def _beat_slice(onsets: list[float], ok: list[int], length: float, rate_hz: int, n: int) -> slice:
    """Return the sample slice of one dominant beat (for exact per-wave areas)."""
    if not ok:
        return slice(0, 0)
    start = int(onsets[ok[len(ok) // 2]] * rate_hz)
    return slice(start, min(n, start + int(length * rate_hz) + 1))
