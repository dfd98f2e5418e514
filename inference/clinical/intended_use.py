"""Check, before the models speak, that an ECG is one they were made for.

The anomaly models were trained on adult, unpaced, correctly recorded PTB-XL ECGs. Three checks:

- **paced rhythm** (``PACE``, SNOMED 10370003 "Rhythm from artificial pacing"): pacing spikes,
  i.e. abrupt slope changes within one or two samples, synchronous in ≥3 of the 8 independent
  leads (I, II, V1–V6), at least :data:`MIN_SPIKES` of them. Found on the raw signal at its own
  rate; devices that filter the spikes out are not detected (no morphology rule).
- **under 18** (``PEDIATRIC``): paediatric ECGs have other normal limits (axis, T in V1–V3, rate).
- **electrode reversal** (technical): LA/RA and RA/LL limb reversals and adjacent precordial
  swaps (V1/V2 … V5/V6), scored by small logistic regressions on correlations between the
  median beats of :func:`inference.clinical.beats.beats_analyse`; skipped on paced ECGs. LA/LL
  reversal is not checked: on simulated swaps no median-beat feature separated it (best AUROC
  0.67, P-wave polarity).

Public API: :func:`intended_use_findings` and :func:`simulate_reversal` (the training harness).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from inference.clinical.beats import Beats, beats_analyse
from inference.clinical.types import Finding
from inference.preprocessing import LEADS_12, reorder_leads

_IDX = {lead: i for i, lead in enumerate(LEADS_12)}

# ---------------------------------------------------------------- pacing spikes
# Second difference (at a 2 ms step) above 0.5 mV: a QRS at 500 Hz bends by at most ~0.35 mV per
# sample (max over the 494 unpaced PTB-XL subset records), an unfiltered or PTB-XL-recorded pacing
# spike by 0.9–2.9 mV (the 6 PACE records of the subset).
SPIKE_D2_MV = 0.5
SPIKE_MIN_LEADS = 3  # of I, II, V1–V6: a spike is a body-surface event, not one electrode's glitch
MIN_SPIKES = 3  # fewer is an artefact or a rare demand-paced beat
_SPIKE_LEADS = ("I", "II", "V1", "V2", "V3", "V4", "V5", "V6")
_SPIKE_MERGE_S = 0.02  # atrial and ventricular spikes are ≥ 60 ms apart; one spike spans < 20 ms
_SPIKE_MAX_PER_S = 5.0  # dual-chamber pacing at 150/min gives 5 spikes/s; more is noise
_MIN_RATE_HZ = 400.0  # below this a 0.5–2 ms spike is averaged away by the anti-alias filter
_NARROW_RATIO = 1.5  # spike: d2 at 4 ms ~0.5-1x d2 at 2 ms; a QRS peak's: 2-4x
_CAPTURE_S = 0.35  # a spike followed by a QRS within 350 ms (AV delay + QRS) may have captured


@dataclass(frozen=True)
class PacingSpikes:
    """Pacing spikes found in one ECG (times in seconds from the start)."""

    times_s: tuple[float, ...]
    duration_s: float

    @property
    def count(self) -> int:
        """Return the number of spikes."""
        return len(self.times_s)

    @property
    def per_minute(self) -> float:
        """Return the spike rate."""
        return 60.0 * self.count / self.duration_s if self.duration_s > 0 else 0.0


def detect_pacing_spikes(raw: np.ndarray, rate_hz: float) -> PacingSpikes | None:
    """Return the pacing spikes of a (12, n) LEADS_12-ordered raw signal in mV, or None if unusable.

    None when the rate is too low to see a spike or fewer than three independent leads exist.
    """
    if not np.isfinite(rate_hz) or rate_hz < _MIN_RATE_HZ or raw.shape[1] < 10:
        return None
    rows = [raw[_IDX[lead]] for lead in _SPIKE_LEADS if np.isfinite(raw[_IDX[lead]]).mean() > 0.5]
    if len(rows) < SPIKE_MIN_LEADS:
        return None
    x = np.asarray(rows, dtype=np.float64)
    # A fixed 2 ms step keeps the threshold meaning the same at 500 and 1000 Hz.
    k = max(1, int(round(rate_hz / 500.0)))
    d2 = np.zeros_like(x)
    d2[:, k:-k] = np.abs(x[:, 2 * k :] - 2.0 * x[:, k:-k] + x[:, : -2 * k])
    d2 = np.nan_to_num(d2, nan=0.0)  # a gap (NaN) is not a spike
    # A pacing spike is narrower than any QRS: its second difference does not grow at twice the
    # step (a smooth or triangular R peak's does, by 2-4x), so tall sharp R waves are not spikes.
    wide = np.zeros_like(x)
    wide[:, 2 * k : -2 * k] = np.abs(x[:, 4 * k :] - 2.0 * x[:, 2 * k : -2 * k] + x[:, : -4 * k])
    narrow = np.nan_to_num(wide, nan=np.inf) <= _NARROW_RATIO * d2
    above = ndimage.maximum_filter1d(np.where(narrow, d2, 0.0), 2 * k + 1, axis=1) >= SPIKE_D2_MV
    hits = above.sum(axis=0) >= SPIKE_MIN_LEADS
    merge = max(1, int(_SPIKE_MERGE_S * rate_hz / 2))
    labels, n = ndimage.label(ndimage.binary_dilation(hits, iterations=merge))
    if n == 0:
        return PacingSpikes((), raw.shape[1] / rate_hz)
    strength = d2.max(axis=0)
    centres = ndimage.maximum_position(strength, labels, index=np.arange(1, n + 1))
    times = tuple(round(float(c[0]) / rate_hz, 4) for c in centres)
    return PacingSpikes(times, raw.shape[1] / rate_hz)


def _pacing_finding(spikes: PacingSpikes | None, beats: Beats | None) -> Finding | None:
    if spikes is None or spikes.count < MIN_SPIKES:
        return None
    if spikes.count / spikes.duration_s > _SPIKE_MAX_PER_S:
        return None
    evidence: dict[str, object] = {
        "pacing_spikes": spikes.count,
        "spikes_per_min": round(spikes.per_minute, 1),
        "spike_times_s": list(spikes.times_s[:20]),
        "criterion": f">= {MIN_SPIKES} spikes with second difference >= {SPIKE_D2_MV} mV in >= {SPIKE_MIN_LEADS} leads",
    }
    if beats is not None and len(beats.r_peaks):
        r_s = beats.r_peaks / float(beats.rate_hz)
        followed = sum(1 for t in spikes.times_s if np.any((r_s > t) & (r_s - t <= _CAPTURE_S)))
        evidence["spikes_followed_by_qrs"] = followed
    return Finding(
        code="PACE",
        text="Paced rhythm (pacing spikes): outside the intended use of the AI models; measurements only",
        snomed="10370003",
        category="intended-use",
        source="intended-use",
        abnormal=True,
        evidence=evidence,
    )


# ---------------------------------------------------------------- age
ADULT_AGE_YEARS = 18.0


def _pediatric_finding(age_years: float | None) -> Finding | None:
    if age_years is None or not np.isfinite(age_years) or age_years < 0 or age_years >= ADULT_AGE_YEARS:
        return None
    return Finding(
        code="PEDIATRIC",
        text="Patient under 18 years: outside the intended use of the AI models; measurements only",
        snomed=None,  # an age statement, not an ECG finding: no SNOMED ECG concept applies
        category="intended-use",
        source="intended-use",
        abnormal=False,
        evidence={"age_years": round(float(age_years), 1), "adult_from_years": ADULT_AGE_YEARS},
    )


# ---------------------------------------------------------------- electrode reversal
REVERSALS = ("LA_RA", "LA_LL", "RA_LL", "V1_V2", "V2_V3", "V3_V4", "V4_V5", "V5_V6")


def simulate_reversal(signal: np.ndarray, kind: str) -> np.ndarray:
    """Return a copy of a (12, …) LEADS_12-ordered signal as recorded with two electrodes swapped.

    Limb swaps follow Einthoven/Goldberger algebra (the Wilson terminal, hence V1–V6, is
    unchanged): LA/RA: I→−I, II↔III, aVR↔aVL; LA/LL: I↔II, III→−III, aVL↔aVF; RA/LL: I→−III,
    II→−II, III→−I, aVR↔aVF. ``Vk_Vm`` swaps two precordial leads. Raises ValueError on an
    unknown ``kind``. Every swap permutes leads and flips signs only, so it commutes with
    per-lead filtering and median beats (and leaves the spatial magnitude, hence R peaks, alone).
    """
    x = np.array(signal, dtype=np.float64, copy=True)
    i, ii, iii, avr, avl, avf = (np.array(signal[_IDX[n]], dtype=np.float64) for n in LEADS_12[:6])
    if kind == "LA_RA":
        x[0], x[1], x[2], x[3], x[4] = -i, iii, ii, avl, avr
    elif kind == "LA_LL":
        x[0], x[1], x[2], x[4], x[5] = ii, i, -iii, avf, avl
    elif kind == "RA_LL":
        x[0], x[1], x[2], x[3], x[5] = -iii, -ii, -i, avf, avr
    elif kind in REVERSALS:
        a, b = (_IDX[lead] for lead in kind.split("_"))
        x[[a, b]] = x[[b, a]]
    else:
        raise ValueError(f"unknown reversal {kind!r}; expected one of {REVERSALS}")
    return x


# Median-beat windows relative to the R fiducial (samples at 500 Hz): the whole beat from just
# before QRS onset to the end of T, and the QRS alone.
_FULL = (-30, 200)
_QRS = (-25, 35)

# Logistic regressions fitted by ``python -m training.evaluate_lead_reversal --fit --data
# ../shared/data`` on median beats of PTB-XL folds 1–9 (ptb-xl-subset) and ptb-xl-extra records
# outside fold 10 (1,607 ECGs), each unmodified (label 0) and with the swap simulated (label 1);
# sklearn LogisticRegression(C=1). Thresholds: the (1 − 0.004) quantile of the unmodified ECGs'
# scores per group (limb, precordial), so that together they alert on ≤ ~1 % of them.
# {swap: (intercept, {feature: coefficient})}
# Precordial intercepts are 0 by symmetry: swapping a pair back negates every one of its features.
LIMB_MODELS: dict[str, tuple[float, dict[str, float]]] = {
    "LA_RA": (
        0.2581,
        {"c_I_V5": -1.0205, "c_I_V6": -1.9452, "c_aVR_V5": 1.2095, "c_aVR_V6": 2.8762, "c_aVL_V6": -3.6699},
    ),
    "RA_LL": (
        0.3164,
        {"c_II_V5": -2.5359, "c_II_V6": -0.1964, "c_aVF_V6": -2.8482, "c_aVR_V5": 1.3806, "c_aVR_V6": 2.1783},
    ),
}
PRECORDIAL_MODELS: dict[str, tuple[float, dict[str, float]]] = {
    "V1_V2": (
        0.0,
        {"g1_full": 9.0721, "h1_full": 3.3771, "e1_full": 0.0, "g1_qrs": -2.085, "h1_qrs": -0.8178, "e1_qrs": 0.0},
    ),
    "V2_V3": (
        0.0,
        {
            "g2_full": 4.7914,
            "h2_full": 4.3583,
            "e2_full": 0.4331,
            "g2_qrs": 1.8069,
            "h2_qrs": 3.2912,
            "e2_qrs": -1.4844,
        },
    ),
    "V3_V4": (
        0.0,
        {"g3_full": 6.7539, "h3_full": 3.4244, "e3_full": 3.3295, "g3_qrs": 3.1785, "h3_qrs": 2.7537, "e3_qrs": 0.4248},
    ),
    "V4_V5": (
        0.0,
        {"g4_full": 9.3961, "h4_full": 4.2268, "e4_full": 5.1693, "g4_qrs": 6.6409, "h4_qrs": 3.5419, "e4_qrs": 3.099},
    ),
    "V5_V6": (
        0.0,
        {"g5_full": 5.416, "h5_full": 0.0, "e5_full": 12.662, "g5_qrs": 2.7728, "h5_qrs": 0.0, "e5_qrs": 10.1384},
    ),
}
LIMB_THRESHOLD = 0.8031
PRECORDIAL_THRESHOLD = 0.9949

_LIMB_FEATURES = {
    "LA_RA": ("c_I_V5", "c_I_V6", "c_aVR_V5", "c_aVR_V6", "c_aVL_V6"),
    "RA_LL": ("c_II_V5", "c_II_V6", "c_aVF_V6", "c_aVR_V5", "c_aVR_V6"),
}
_LIMB_TEXT = {
    "LA_RA": "Suspected left/right arm electrode reversal: repeat the recording",
    "RA_LL": "Suspected right arm/left leg electrode reversal: repeat the recording",
}
# SNOMED 251139008 "Suspect arm ECG leads reversed" (listed in the PhysioNet Challenge 2021 Dx
# mapping as ALR) names the arm pair only; the other reversals have no concept we could verify.
_LIMB_SNOMED = {"LA_RA": "251139008", "RA_LL": None}


def _corr(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt(np.dot(a, a) * np.dot(b, b)))
    return float(np.dot(a, b) / den) if den > 0 else 0.0


def _window(median: np.ndarray, r: int, win: tuple[int, int]) -> np.ndarray:
    return median[:, r + win[0] : r + win[1]]


def limb_features(median: np.ndarray, r: int) -> dict[str, float]:
    """Return correlations of limb leads with V5/V6 over the whole median beat (NaN if a lead is absent).

    Lead I and V6 both look at the lateral wall, aVR away from it: after an LA/RA swap lead I
    is −I and aVR is the old aVL, so these correlations flip sign, whatever the pathology.
    """
    w = _window(median, r, _FULL)
    out: dict[str, float] = {}
    for limb in ("I", "II", "aVR", "aVL", "aVF"):
        for chest in ("V5", "V6"):
            a, b = w[_IDX[limb]], w[_IDX[chest]]
            ok = np.all(np.isfinite(a)) and np.all(np.isfinite(b))
            out[f"c_{limb}_{chest}"] = _corr(a, b) if ok else float("nan")
    return out


def precordial_features(median: np.ndarray, r: int) -> dict[str, float]:
    """Return, per adjacent pair Vk/Vk+1, how much swapping them back would improve lead ordering.

    Neighbouring chest leads look alike: in a chain aVR, V1…V6, I (aVR and I anchor the ends)
    ``g`` is the gain in summed neighbour correlation from swapping the pair, ``h`` (Vk vs
    Vk+1 against Vk+2) and ``e`` (against Vk−1) its one-sided parts; over the whole beat and the
    QRS alone. NaN where a needed lead is absent.
    """
    chain = ["aVR", "V1", "V2", "V3", "V4", "V5", "V6", "I"]
    out: dict[str, float] = {}
    for tag, win in (("full", _FULL), ("qrs", _QRS)):
        w = _window(median, r, win)
        rows = [w[_IDX[lead]] for lead in chain]
        ok = [bool(np.all(np.isfinite(x))) for x in rows]

        def c(p: int, q: int, rows: list[np.ndarray] = rows, ok: list[bool] = ok) -> float:
            return _corr(rows[p], rows[q]) if ok[p] and ok[q] else float("nan")

        for k in range(1, 6):
            a, b = k, k + 1
            out[f"g{k}_{tag}"] = (c(a - 1, b) + c(a, b + 1)) - (c(a - 1, a) + c(b, b + 1))
            out[f"h{k}_{tag}"] = c(a, b + 1) - c(b, b + 1) if b + 1 < len(chain) - 1 else 0.0
            out[f"e{k}_{tag}"] = c(a - 1, b) - c(a - 1, a) if a - 1 > 0 else 0.0
    return out


def precordial_feature_names(k: int) -> tuple[str, ...]:
    """Return the features of the V``k``/V``k+1`` model."""
    return tuple(f"{p}{k}_{tag}" for tag in ("full", "qrs") for p in ("g", "h", "e"))


def _logistic(model: tuple[float, dict[str, float]], feats: dict[str, float]) -> float | None:
    intercept, coefs = model
    values = [feats.get(name, float("nan")) for name in coefs]
    if not all(np.isfinite(v) for v in values):
        return None
    z = intercept + sum(coef * v for coef, v in zip(coefs.values(), values, strict=True))
    return float(1.0 / (1.0 + np.exp(-np.clip(z, -50.0, 50.0))))


def reversal_scores(median: np.ndarray, r: int) -> dict[str, float]:
    """Return {swap: probability} for every swap whose leads are all present in the median beats."""
    scores: dict[str, float] = {}
    limb = limb_features(median, r)
    for kind, model in LIMB_MODELS.items():
        p = _logistic(model, limb)
        if p is not None:
            scores[kind] = p
    chest = precordial_features(median, r)
    for kind, model in PRECORDIAL_MODELS.items():
        p = _logistic(model, chest)
        if p is not None:
            scores[kind] = p
    return scores


def _reversal_findings(beats: Beats) -> list[Finding]:
    if beats.n_dominant < 1 or not np.isfinite(beats.median).any():
        return []
    scores = reversal_scores(beats.median, beats.median_r)
    findings: list[Finding] = []
    limb = {k: v for k, v in scores.items() if k in LIMB_MODELS and v >= LIMB_THRESHOLD}
    if limb:
        kind = max(limb, key=lambda k: limb[k])  # one limb reversal at a time: the likeliest
        findings.append(
            Finding(
                code=f"LIMB_REVERSAL_{kind}",
                text=_LIMB_TEXT[kind],
                snomed=_LIMB_SNOMED[kind],
                category="technical",
                source="technical",
                abnormal=True,
                evidence={
                    "score": round(limb[kind], 3),
                    "threshold": LIMB_THRESHOLD,
                    **{f: round(v, 3) for f, v in limb_features(beats.median, beats.median_r).items()},
                },
            )
        )
    chest = {k: v for k, v in scores.items() if k in PRECORDIAL_MODELS and v >= PRECORDIAL_THRESHOLD}
    if chest:
        kind = max(chest, key=lambda k: chest[k])
        a, b = kind.split("_")
        findings.append(
            Finding(
                code=f"PRECORDIAL_REVERSAL_{kind}",
                text=f"Suspected {a}/{b} electrode reversal: repeat the recording",
                snomed=None,
                category="technical",
                source="technical",
                abnormal=True,
                evidence={"score": round(chest[kind], 3), "threshold": PRECORDIAL_THRESHOLD},
            )
        )
    return findings


def intended_use_findings(
    signal: np.ndarray,
    rate_hz: float,
    leads: Sequence[str],
    *,
    age_years: float | None,
    beats: Beats | None = None,
) -> list[Finding]:
    """Return the intended-use and electrode-reversal findings of one ECG; never raise.

    ``signal`` is (len(leads), n) in mV with NaN for missing samples; ``beats`` the result of
    :func:`beats_analyse` on the same signal (computed here if None). Checks that lack their
    leads are skipped silently.
    """
    findings: list[Finding] = []
    pediatric = _pediatric_finding(age_years)
    if pediatric is not None:
        findings.append(pediatric)
    try:
        raw = reorder_leads(signal, leads)
    except ValueError:
        return findings
    if beats is None:
        beats = beats_analyse(signal, rate_hz, leads)
    paced = _pacing_finding(detect_pacing_spikes(raw, float(rate_hz)), beats)
    if paced is not None:
        # Paced QRS and T shapes break the lead relations the reversal models learned (3 of the
        # 6 PTB-XL subset PACE records scored as limb reversals), and a paced ECG gets no AI
        # verdict anyway: say nothing about electrodes rather than something wrong.
        findings.append(paced)
        return findings
    findings.extend(_reversal_findings(beats))
    return findings
