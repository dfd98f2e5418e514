"""Where the findings are: fuse the detector's anomaly map with the measured beat-by-beat evidence.

The detector's restoration error marks what it restores badly; it cannot see rhythm (a pause or a
premature beat restores well) and it spreads over every beat. The measurements already know where
the premature beats, pauses, irregular runs and the leads of a conduction or ST finding are, so:

1. ``evidence_layers``: one (12, n) layer per kind of measured evidence at the beats' 500 Hz,
   each labelled with the finding that explains it: ectopic beats (``PVC``/``PAC``: the beat and
   its pause, all leads), a pause without a QRS (``pause``), a run of irregular beats (``irregular
   run``), beats whose ST-T departs from the lead's median beat (``ST-T change``: those leads, those
   beats), and whole-record statements (conduction delay: the QRS of the leads with a late QRS;
   ``1AVB``: the PR spans; ST elevation/depression: the ST of the named leads; AF; electrode
   reversal: the affected leads).
2. ``localize``: evidence + ``alpha`` × (detector map / its served map threshold), on the detector's
   9.6 s record view, and a short list of boxes: one per whole-record statement (its leads, the
   whole view) and one per time span where the fused map passes ``threshold`` (leads merged), each
   labelled with its finding or ``model only``; at most ``max_boxes``, weakest dropped first.

``alpha`` and ``threshold`` were chosen on synthetic findings injected into PTB-XL fold-9 normals
only (``python -m training.evaluate_detector --localization``; docs/models/detector.md).
numpy only (served path).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inference.clinical.beats import CLASS_EXCLUDED, CLASS_NORMAL, CLASS_SUPRA, CLASS_VENTRICULAR, Beats
from inference.clinical.types import EcgMeasurements, Finding
from inference.preprocessing import DETECTOR_RATE_HZ, LEADS_12
from inference.results import AnomalyInterval

MODEL_ONLY = "model only"
# Chosen on fold-9 injections (see the module docstring; the median over the 3 injection seeds of
# the run recorded in docs/models/detector.md); the detector map is divided by the served map
# threshold first, so they carry over to a retrained detector's own scale (re-check with the run).
ALPHA = 0.02
THRESHOLD = 0.17
# A box the detector alone supports needs its map at this multiple of the served map threshold:
# the level that at most 5% of fold-9 normals reach anywhere (the detector's map peaks on every
# beat, and a flagged normal ECG must not be covered in boxes).
MODEL_ONLY_LEVEL = 25.8
EVIDENCE_LEVEL = 0.25  # a box is the measurements' if their evidence reaches this inside it
MAX_BOXES = 4
MIN_BOX_MS = 60.0
MERGE_GAP_MS = 80.0

_IDX = {name: i for i, name in enumerate(LEADS_12)}
_CONDUCTION = ("CRBBB", "IRBBB", "CLBBB", "ILBBB", "IVCD")
_WHOLE_RHYTHM = ("AFIB", "AFLT")
# Leads an electrode swap changes (Einthoven): LA/RA swaps I, II/III, aVR/aVL; RA/LL inverts II
# and swaps I/-III, aVR/aVF.
_REVERSAL_LEADS = {
    "LIMB_REVERSAL_LA_RA": ("I", "II", "III", "aVR", "aVL"),
    "LIMB_REVERSAL_RA_LL": ("I", "II", "III", "aVR", "aVF"),
}
_IRREGULAR = 0.2  # successive RR change (share of the median RR) that breaks sinus regularity
_MIN_RUN = 3  # irregular intervals in a row: one ectopic makes two
_PAUSE = 1.6  # RR at least this × the median: a beat is missing
_ST_Z = 3.0  # ST-T residual (robust z) where evidence starts; it reaches 1 at _ST_Z + _ST_SPAN
_ST_SPAN = 5.0
_LONG_PR_MS = 200.0  # the first-degree AV block limit (AHA/ACC/HRS 2009; statements._AVB1_PR)
_LATE_QRS_MV = 0.15  # QRS deflection 60–140 ms after R: the late activation of a conduction delay


@dataclass(frozen=True)
class EvidenceLayer:
    """One kind of measured evidence: values in [0, 1] over (12, n) at the beats' rate."""

    label: str
    values: np.ndarray
    whole_record: bool = False
    leads: tuple[str, ...] = ()


@dataclass(frozen=True)
class Localization:
    """The fused map on the detector's record view, the evidence alone, and the boxes shown."""

    fused_map: np.ndarray  # (12, RECORD_SAMPLES) at 250 Hz
    evidence_map: np.ndarray
    intervals: tuple[AnomalyInterval, ...]

    @property
    def boxes(self) -> int:
        """Return how many boxes (one finding, one time span, one or more leads) are shown."""
        return len({interval.box for interval in self.intervals})


def _span(layer: np.ndarray, leads: Sequence[int] | slice, a: float, b: float, value: float = 1.0) -> None:
    lo, hi = max(0, int(a)), min(layer.shape[1], int(b))
    if hi > lo:
        layer[leads, lo:hi] = np.maximum(layer[leads, lo:hi], value)


def _ectopic_layers(beats: Beats, n: int) -> list[EvidenceLayer]:
    """Return the premature beats (V, S) and their pauses, all leads."""
    fs, peaks, rr_med = beats.rate_hz, beats.r_peaks, float(np.median(np.diff(beats.r_peaks)))
    out = []
    for cls, label, pre in ((CLASS_VENTRICULAR, "PVC", 0.12), (CLASS_SUPRA, "PAC", 0.24)):
        layer = np.zeros((12, n))
        for k in np.flatnonzero(beats.beat_class == cls):
            r = peaks[k]
            end = peaks[k + 1] - 0.45 * rr_med if k + 1 < len(peaks) else r + 0.6 * fs
            _span(layer, slice(None), r - pre * fs, max(end, r + 0.45 * fs))
        out.append(EvidenceLayer(label, layer))
    return out


def _rhythm_layers(beats: Beats, n: int) -> list[EvidenceLayer]:
    """Return pauses (a missing QRS after a P) and runs of irregular RR (a paroxysm of AF or similar)."""
    # Excluded detections (a P or T wave taken for a beat, edge beats) would split a pause in two.
    real = beats.beat_class != CLASS_EXCLUDED
    fs, peaks = beats.rate_hz, beats.r_peaks[real]
    pause, run = np.zeros((12, n)), np.zeros((12, n))
    if len(peaks) < 3:
        return []
    rr = np.diff(peaks).astype(float)
    rr_med = float(np.median(rr))
    ectopic = np.isin(beats.beat_class[real], (CLASS_VENTRICULAR, CLASS_SUPRA))
    for k in np.flatnonzero(rr >= _PAUSE * rr_med):
        if ectopic[k]:  # the pause after an ectopic beat is already marked with it
            continue
        missing = peaks[k] + rr_med
        _span(pause, slice(None), missing - 0.26 * fs, min(missing + 0.45 * fs, peaks[k + 1] - 0.25 * fs))
    jumps = np.abs(np.diff(rr)) >= _IRREGULAR * rr_med  # jump k: between intervals k and k+1
    irregular = np.abs(rr - rr_med) >= _IRREGULAR * rr_med
    irregular[:-1] |= jumps
    irregular[1:] |= jumps
    # The coupling interval and pause of one ectopic beat, and a pause, are explained by them: they
    # carry a run on but do not count towards one. Two or more ectopic beats inside one irregular
    # run are the run itself (an AF paroxysm's irregular beats are often called premature).
    touching = ectopic[:-1] | ectopic[1:] | (rr >= _PAUSE * rr_med)
    start = None
    for k in range(len(rr) + 1):
        if k < len(rr) and irregular[k]:
            start = k if start is None else start
            continue
        if start is not None:
            inside = slice(start, k)
            several = ectopic[start + 1 : k].sum() >= 2
            counted = (k - start) if several else int((~touching[inside]).sum())
            if counted >= _MIN_RUN:
                _span(run, slice(None), peaks[start] + 0.45 * rr_med, peaks[k] - 0.22 * fs)
        start = None
    return [EvidenceLayer("pause", pause), EvidenceLayer("irregular run", run)]


def _st_t_layer(beats: Beats, n: int) -> EvidenceLayer:
    """Return the ST-T of dominant beats that departs from the lead's median beat (robust z)."""
    fs, peaks = beats.rate_hz, beats.r_peaks
    layer = np.zeros((12, n))
    rr_med = float(np.median(np.diff(peaks)))
    a, b = int(0.04 * fs), int(min(0.45 * fs, 0.6 * rr_med))
    dominant = [r for r, c in zip(peaks, beats.beat_class, strict=True) if c == CLASS_NORMAL and r + b <= n]
    med = beats.median[:, beats.median_r + a : beats.median_r + b]
    if len(dominant) < 3 or not np.isfinite(med).any():
        return EvidenceLayer("ST-T change", layer)
    resid = np.abs(np.stack([beats.signal[:, r + a : r + b] for r in dominant]) - med[None])
    kernel = np.ones(int(0.04 * fs)) / int(0.04 * fs)  # 40 ms: a level change, not a noise spike
    resid = np.apply_along_axis(lambda v: np.convolve(v, kernel, mode="same"), 2, resid)
    sigma = 1.4826 * np.nanmedian(resid, axis=(0, 2)) + 0.01  # per lead, over beats and samples
    z = resid / sigma[None, :, None]
    value = np.clip((z - _ST_Z) / _ST_SPAN, 0.0, 1.0)
    value[:, ~beats.lead_usable] = 0.0
    for r, v in zip(dominant, np.nan_to_num(value), strict=True):
        layer[:, r + a : r + b] = np.maximum(layer[:, r + a : r + b], v)
    return EvidenceLayer("ST-T change", layer)


def _late_qrs_leads(beats: Beats) -> tuple[str, ...]:
    """Return the leads whose median QRS still deflects 60–140 ms after R (the delayed activation)."""
    fs, r = beats.rate_hz, beats.median_r
    late = np.nanmax(np.abs(beats.median[:, r + int(0.06 * fs) : r + int(0.14 * fs)]), axis=1)
    leads = tuple(lead for lead, v in zip(LEADS_12, late, strict=True) if np.isfinite(v) and v >= _LATE_QRS_MV)
    return leads or LEADS_12


def _finding_layers(beats: Beats, findings: Sequence[Finding], m: EcgMeasurements, n: int) -> list[EvidenceLayer]:
    """Return one layer per whole-record statement, over the beats and leads it is about."""
    fs, peaks = beats.rate_hz, beats.r_peaks
    out = []
    if m.pr_ms is not None and m.pr_ms > _LONG_PR_MS and not any(f.code == "1AVB" for f in findings):
        # The statement needs sinus rhythm; a long PR measured on a rhythm the rules leave unnamed
        # is still where a clinician would look.
        findings = [*findings, Finding("long PR", "PR interval over 200 ms", None, "interval", "measured", True)]
    for f in findings:
        layer = np.zeros((12, n))
        if f.code in _CONDUCTION:
            leads = _late_qrs_leads(beats)
            for r in peaks:
                _span(layer, [_IDX[x] for x in leads], r - 0.04 * fs, r + 0.15 * fs)
        elif f.code in ("1AVB", "long PR") and m.pr_ms:
            leads = LEADS_12
            for r in peaks:
                _span(layer, slice(None), r - 0.05 * fs - m.pr_ms / 1000 * fs, r - 0.05 * fs)
        elif f.code in ("STE", "STD"):
            territories = f.evidence.get("territories") or {}
            leads = tuple(lead for group in territories.values() for lead in group)
            for r in peaks:
                _span(layer, [_IDX[x] for x in leads], r + 0.04 * fs, r + 0.32 * fs)
        elif f.code in _WHOLE_RHYTHM:
            leads = LEADS_12
            layer[:] = 1.0
        elif f.code in _REVERSAL_LEADS or f.code.startswith("PRECORDIAL_REVERSAL_"):
            pair = f.code.removeprefix("PRECORDIAL_REVERSAL_").split("_")
            leads = _REVERSAL_LEADS.get(f.code, tuple(pair))
            layer[[_IDX[x] for x in leads if x in _IDX]] = 1.0
        else:
            continue
        out.append(EvidenceLayer(f.code, layer, whole_record=True, leads=tuple(leads)))
    return out


def evidence_layers(beats: Beats, findings: Sequence[Finding], measurements: EcgMeasurements) -> list[EvidenceLayer]:
    """Return every layer of measured evidence for one ECG (none when it has under 3 beats)."""
    n = beats.signal.shape[1]
    if len(beats.r_peaks) < 3:
        return []
    layers = [*_ectopic_layers(beats, n), *_rhythm_layers(beats, n), _st_t_layer(beats, n)]
    layers += _finding_layers(beats, findings, measurements, n)
    for layer in layers:
        layer.values[~beats.lead_usable] = 0.0
    return [layer for layer in layers if layer.values.any()]


def to_view(values: np.ndarray, rate_hz: int, offset_ms: float, length: int) -> np.ndarray:
    """Sample a (12, n) array at ``rate_hz`` on the detector's view (250 Hz from ``offset_ms``)."""
    t = offset_ms / 1000.0 + np.arange(length) / DETECTOR_RATE_HZ
    idx = np.round(t * rate_hz).astype(int)
    out = np.zeros((values.shape[0], length))
    ok = idx < values.shape[1]
    out[:, ok] = values[:, idx[ok]]
    return out


def _runs(active: np.ndarray, gap: int) -> list[tuple[int, int]]:
    padded = np.concatenate([[False], active, [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    merged: list[list[int]] = []
    for s, e in zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True):
        if merged and s - merged[-1][1] <= gap:
            merged[-1][1] = e
        else:
            merged.append([s, e])
    return [(s, e) for s, e in merged]


def localize(
    *,
    layers: Sequence[EvidenceLayer],
    rate_hz: int,
    detector_map: np.ndarray | None,
    map_threshold: float,
    valid: np.ndarray,
    offset_ms: float,
    show_model_only: bool,
    alpha: float = ALPHA,
    threshold: float = THRESHOLD,
    model_only_level: float = MODEL_ONLY_LEVEL,
    max_boxes: int = MAX_BOXES,
) -> Localization:
    """Return the fused map and the boxes of one ECG on the detector's record view.

    ``detector_map`` (12, L) at 250 Hz (None: evidence only), ``valid`` bool (12, L) usable points,
    ``offset_ms`` where the view starts in the recording (interval times are from the recording
    start). Boxes the detector alone supports are shown only if ``show_model_only`` (a flagged ECG).
    """
    length = valid.shape[1]
    views = [to_view(layer.values, rate_hz, offset_ms, length) * valid for layer in layers]
    evidence = np.max(views, axis=0) if views else np.zeros(valid.shape)
    detector = np.zeros(valid.shape) if detector_map is None else np.nan_to_num(detector_map) / map_threshold
    fused = np.where(valid, evidence + alpha * detector, 0.0)
    ms = 1000.0 / DETECTOR_RATE_HZ
    boxes: list[tuple[float, str, tuple[str, ...], float, float]] = []
    covered = np.zeros(valid.shape, dtype=bool)
    for layer, view in zip(layers, views, strict=True):
        if layer.whole_record and view.any():
            covered |= view > 0
            region = view > 0
            leads = tuple(lead for i, lead in enumerate(LEADS_12) if region[i].any())
            cols = np.flatnonzero(region.any(axis=0))
            boxes.append((float(fused[region].mean()), layer.label, leads, cols[0] * ms, (cols[-1] + 1) * ms))
    local = [(layer.label, view) for layer, view in zip(layers, views, strict=True) if not layer.whole_record]
    active: np.ndarray = (fused >= threshold) & ~covered
    for s, e in _runs(np.asarray(active.any(axis=0)), int(MERGE_GAP_MS / ms)):
        if (e - s) * ms < MIN_BOX_MS:
            continue
        part = active[:, s:e]
        # The leads active over a quarter of the span (at least the most active one).
        leads = tuple(lead for i, lead in enumerate(LEADS_12) if part[i].mean() >= 0.25)
        leads = leads or (LEADS_12[int(np.argmax(part.sum(axis=1)))],)
        support = {label: float(view[:, s:e][part].sum()) for label, view in local}
        if evidence[:, s:e][part].max() >= EVIDENCE_LEVEL:
            label = max(support, key=lambda k: support[k])
        elif show_model_only and detector[:, s:e][part].max() >= model_only_level:
            label = MODEL_ONLY
        else:
            continue
        boxes.append((float(fused[:, s:e][part].mean()), label, leads, s * ms, e * ms))
    boxes.sort(key=lambda b: b[0], reverse=True)
    intervals = tuple(
        AnomalyInterval(
            lead=lead,
            start_ms=round(start + offset_ms, 1),
            end_ms=round(end + offset_ms, 1),
            score=round(score, 4),
            finding=label,
            box=k,
        )
        for k, (score, label, leads, start, end) in enumerate(boxes[:max_boxes])
        for lead in leads
    )
    return Localization(
        fused_map=fused.astype(np.float32), evidence_map=evidence.astype(np.float32), intervals=intervals
    )


def box_mask(intervals: Sequence[AnomalyInterval], offset_ms: float, shape: tuple[int, int]) -> np.ndarray:
    """Return the (12, L) view mask the boxes cover (for scoring them against a ground truth)."""
    out = np.zeros(shape, dtype=bool)
    for interval in intervals:
        a = int(round((interval.start_ms - offset_ms) / 1000 * DETECTOR_RATE_HZ))
        b = int(round((interval.end_ms - offset_ms) / 1000 * DETECTOR_RATE_HZ))
        out[_IDX[interval.lead], max(0, a) : max(0, b)] = True
    return out
