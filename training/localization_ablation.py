"""The localization ablation: detector map alone, measured evidence alone, and both fused.

Runs the synthetic benchmark (``training.localization_benchmark``) for several injection seeds.
For each seed, every weight and threshold is chosen on the fold-9 injections (best mean Dice over
the clinical finding types) and then applied unchanged to the fold-10 injections:

- ``detector``: the detector's map, thresholded (the boxes are the old served per-lead intervals,
  ``inference.postprocessing.anomaly_intervals``, at most 12);
- ``evidence``: ``inference.localization`` with the detector's weight at 0;
- ``fused``: ``inference.localization`` with the detector's weight chosen on fold 9.

Per type: localization AUROC, Dice of the thresholded map, Dice of the boxes shown, boxes per ECG;
and on the real fold-10 normals without injection, the boxes a flagged ECG would show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from inference.clinical.interpret import measure_and_state
from inference.localization import EvidenceLayer, box_mask, evidence_layers, localize, to_view
from inference.postprocessing import anomaly_intervals
from inference.preprocessing import DETECTOR_RATE_HZ, LEADS_12, RECORD_SAMPLES, detector_inputs, stack_detector_inputs
from training.data.ptbxl import EcgRecord
from training.localization_benchmark import (
    ANOMALY_TYPES,
    CLINICAL_TYPES,
    best_dice_threshold,
    build_cases,
    mean_dice,
    per_ecg_auroc,
    record_view_start_ms,
    valid_points,
)

ScoreFn = Callable[[dict[str, np.ndarray]], tuple[np.ndarray, np.ndarray]]
ALPHAS = (0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
METHODS = ("detector", "evidence", "fused")


def view_evidence(signal: np.ndarray, rate_hz: int) -> list[EvidenceLayer]:
    """Measure one ECG as the served path does and return its evidence on the record view."""
    measured = measure_and_state(signal.astype(np.float64), rate_hz, LEADS_12, age_years=None, sex=None)
    if measured.beats is None:
        return []
    layers = evidence_layers(measured.beats, measured.findings, measured.measurements)
    start = record_view_start_ms(signal.shape[1], rate_hz)
    return [replace(x, values=to_view(x.values, measured.beats.rate_hz, start, RECORD_SAMPLES)) for x in layers]


def _fused(
    det: np.ndarray, layers: list[list[EvidenceLayer]], valid: np.ndarray, scale: float, alpha: float
) -> np.ndarray:
    out = np.zeros(det.shape, dtype=np.float32)
    for i, (d, ev, v) in enumerate(zip(det, layers, valid, strict=True)):
        evidence = np.max([x.values for x in ev], axis=0) if ev else 0.0
        out[i] = np.where(v, evidence + alpha * np.nan_to_num(d) / scale, 0.0)
    return out


def _boxes(
    method: str, det: np.ndarray, layers: list[list[EvidenceLayer]], valid: np.ndarray, p: dict[str, float]
) -> tuple[list[int], np.ndarray]:
    """Return the boxes shown per ECG (as if flagged) and the (n, 12, L) mask they cover."""
    counts, masks = [], np.zeros(det.shape, dtype=bool)
    for i, (d, ev, v) in enumerate(zip(det, layers, valid, strict=True)):
        if method == "detector":
            amap = np.where(v, d, np.nan)
            intervals = anomaly_intervals(
                amap, rate_hz=DETECTOR_RATE_HZ, leads=LEADS_12, point_threshold=p["threshold"]
            )
            counts.append(len(intervals))
        else:
            loc = localize(
                layers=ev,
                rate_hz=DETECTOR_RATE_HZ,
                detector_map=d,
                map_threshold=p["scale"],
                valid=v,
                offset_ms=0.0,
                show_model_only=True,
                alpha=p["alpha"],
                threshold=p["box_threshold"],
                model_only_level=p["model_only_level"],
            )
            intervals = loc.intervals
            counts.append(loc.boxes)
        masks[i] = box_mask(intervals, 0.0, d.shape)
    return counts, masks


def _choose(method: str, val: dict[str, Any], scale: float, model_only_level: float) -> dict[str, float]:
    """Return the method's weight and thresholds chosen on fold 9 (mean over clinical types).

    ``alpha`` and ``threshold`` (the map level): best Dice of the thresholded map; ``box_threshold``
    (where boxes start): best Dice of the boxes shown, so a spurious box costs what it covers.
    """
    alphas = {"detector": (1.0,), "evidence": (0.0,), "fused": ALPHAS}[method]
    best: tuple[float, dict[str, float]] = (-1.0, {})
    for alpha in alphas:
        maps, masks, valids = [], [], []
        for kind in CLINICAL_TYPES:
            arrays, mask, _, layers, det = val[kind]
            v = valid_points(arrays)
            m = det if method == "detector" else _fused(det, layers, v, scale, alpha)
            maps.append(m)
            masks.append(mask)
            valids.append(v)
        t = best_dice_threshold(maps, masks, valids)
        dice = float(np.mean([mean_dice(m, k, v, t) for m, k, v in zip(maps, masks, valids, strict=True)]))
        if dice > best[0]:
            best = (dice, {"alpha": alpha, "threshold": t, "scale": scale, "model_only_level": model_only_level})
            best[1]["val_dice"] = round(dice, 4)
            pooled = np.concatenate([m.ravel() for m in maps])
    p = best[1]
    box_best = (-1.0, p["threshold"])
    # Candidates: the map level and upper quantiles of the fold-9 maps (and fixed evidence levels).
    candidates = {p["threshold"], *np.quantile(pooled, (0.9, 0.95, 0.98, 0.99, 0.995, 0.999)).tolist()}
    if method != "detector":
        candidates |= {0.25, 0.5, 0.75, 1.0}
    for t in sorted(candidates):
        dices = []
        for kind in CLINICAL_TYPES:
            arrays, mask, _, layers, det = val[kind]
            v = valid_points(arrays)
            _, boxes = _boxes(method, det, layers, v, {**p, "box_threshold": float(t)})
            dices.append(mean_dice(boxes.astype(float), mask, v, 0.5))
        if float(np.mean(dices)) > box_best[0]:
            box_best = (float(np.mean(dices)), float(t))
    return {**p, "box_threshold": box_best[1], "val_box_dice": round(box_best[0], 4)}


def _score_cases(score_fn: ScoreFn, cases: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for kind, (arrays, masks, src, layers) in cases.items():
        scores, maps = score_fn(arrays)
        out[kind] = (arrays, masks, src, layers, maps, scores)
    return out


def run_seed(
    score_fn: ScoreFn,
    val_records: list[EcgRecord],
    test_records: list[EcgRecord],
    map_threshold: float,
    seed: int,
    clean: tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, list[list[EvidenceLayer]]],
    model_only_level: float,
    kinds: tuple[str, ...] = ANOMALY_TYPES,
) -> dict[str, Any]:
    """Return one seed's per-method, per-type metrics (choices on fold 9, figures on fold 10)."""
    val = _score_cases(score_fn, build_cases(val_records, 9000 + 100 * seed, CLINICAL_TYPES, view_evidence))
    val = {k: v[:5] for k, v in val.items()}
    test = _score_cases(score_fn, build_cases(test_records, 10000 + 100 * seed, kinds, view_evidence))
    clean_arrays, clean_scores, clean_maps, clean_layers = clean
    result: dict[str, Any] = {}
    for method in METHODS:
        p = _choose(method, val, map_threshold, model_only_level)
        per_type = {}
        for kind, (arrays, masks, src, layers, det, scores) in test.items():
            v = valid_points(arrays)
            m = det if method == "detector" else _fused(det, layers, v, p["scale"], p["alpha"])
            counts, boxes = _boxes(method, det, layers, v, p)
            per_type[kind] = {
                "localization_auroc": per_ecg_auroc(m, masks, v),
                "dice": mean_dice(m, masks, v, p["threshold"]),
                "box_dice": mean_dice(boxes.astype(float), masks, v, 0.5),
                "boxes_per_ecg": float(np.mean(counts)),
                "detection_auroc": float(
                    roc_auc_score(np.r_[np.zeros(len(src)), np.ones(len(src))], np.r_[clean_scores[src], scores])
                ),
            }
        counts, _ = _boxes(method, clean_maps, clean_layers, valid_points(clean_arrays), p)
        result[method] = {
            "chosen_on_fold9": p,
            "per_type": per_type,
            "normal_boxes_per_ecg": float(np.mean(counts)),
            "normal_share_with_boxes": float(np.mean(np.asarray(counts) > 0)),
            "normal_max_boxes": int(np.max(counts)),
        }
    return result


def _mean_sd(values: list[float]) -> list[float]:
    return [round(float(np.mean(values)), 4), round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4)]


def run_ablation(
    score_fn: ScoreFn,
    val_records: list[EcgRecord],
    test_records: list[EcgRecord],
    map_threshold: float,
    seeds: int = 3,
    kinds: tuple[str, ...] = ANOMALY_TYPES,
) -> dict[str, Any]:
    """Return the ablation over ``seeds`` injection seeds as [mean, SD] per metric.

    ``score_fn(arrays) -> (scores (n,), maps (n, 12, L))``; ``map_threshold`` the served map level
    the detector's map is divided by before fusion.
    """
    clean_arrays = stack_detector_inputs([detector_inputs(r.signal, r.sample_rate_hz) for r in test_records])
    clean_scores, clean_maps = score_fn(clean_arrays)
    clean_layers = [view_evidence(np.nan_to_num(r.signal), r.sample_rate_hz) for r in test_records]
    clean = (clean_arrays, clean_scores, clean_maps, clean_layers)
    # Where a box may rest on the detector alone: the map level (÷ map_threshold) that at most 5%
    # of the fold-9 normals reach anywhere on their valid points.
    val_arrays = stack_detector_inputs([detector_inputs(r.signal, r.sample_rate_hz) for r in val_records])
    _, val_maps = score_fn(val_arrays)
    peaks = [
        np.nanmax(np.where(v, m, np.nan)) / map_threshold
        for m, v in zip(val_maps, valid_points(val_arrays), strict=True)
    ]
    level = float(np.quantile(peaks, 0.95))
    runs = [run_seed(score_fn, val_records, test_records, map_threshold, s, clean, level, kinds) for s in range(seeds)]
    out: dict[str, Any] = {"seeds": seeds, "n_val_normals": len(val_records), "n_test_normals": len(test_records)}
    out["model_only_level"] = round(level, 4)
    for method in METHODS:
        per_type = {
            kind: {
                key: _mean_sd([r[method]["per_type"][kind][key] for r in runs])
                for key in runs[0][method]["per_type"][kind]
            }
            for kind in runs[0][method]["per_type"]
        }
        clinical = [k for k in CLINICAL_TYPES if k in per_type]
        mean = {
            key: _mean_sd([float(np.mean([r[method]["per_type"][k][key] for k in clinical])) for r in runs])
            for key in ("localization_auroc", "dice", "box_dice", "boxes_per_ecg")
        }
        out[method] = {
            "clinical_mean": mean,
            "per_type": per_type,
            "normal_boxes_per_ecg": _mean_sd([r[method]["normal_boxes_per_ecg"] for r in runs]),
            "normal_share_with_boxes": _mean_sd([r[method]["normal_share_with_boxes"] for r in runs]),
            "normal_max_boxes": max(r[method]["normal_max_boxes"] for r in runs),
            "chosen_on_fold9": [r[method]["chosen_on_fold9"] for r in runs],
        }
    out["localization_auroc"] = out["fused"]["clinical_mean"]["localization_auroc"][0]
    out["dice"] = out["fused"]["clinical_mean"]["dice"][0]
    # The detector-only best-Dice level of seed 0 (what --store-map-threshold saves for serving).
    out["dice_threshold"] = runs[0]["detector"]["chosen_on_fold9"]["threshold"]
    return out
