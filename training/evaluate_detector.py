"""Evaluate a detector checkpoint: ``python -m training.evaluate_detector --data PATH``.

PATH is either a folder holding PTB-XL-layout folders (or one of them): test = fold 10, the
operating point (threshold, and whether to add the attribute deviation) is chosen on fold 9; or
a PhysioNet/CinC Challenge WFDB directory: every labelled record is a test record and the
operating point stored in the checkpoint (chosen on PTB-XL fold 9 at training time) is used.

The last stdout line is one JSON object with at least auroc, f1, sensitivity, specificity,
precision_at_recall_90, n_normal, n_abnormal, n_excluded and seconds_per_ecg, plus 95% bootstrap
intervals. ``--localization`` prints the synthetic localization ablation instead
(``training.localization_ablation``: detector map, measured evidence, fused; ``--seeds`` injection
seeds; top-level ``localization_auroc`` and ``dice`` are the fused map's means over the clinical
finding types).
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.data.challenge import is_challenge_dir
from training.data.splits import load_index, split_records
from training.detector_attributes import cached_attribute_table, normalised_targets
from training.detector_data import (
    DetectorArrays,
    arrays_from_challenge,
    arrays_from_index,
    attribute_deviation,
    bootstrap_ci,
    choose_threshold,
    combine_scores,
    detection_metrics,
    score_arrays,
)

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO_ROOT / "ecg_models" / "weights" / "detector.pt"


def load_model(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Load a detector or conv-autoencoder checkpoint; return (model in eval mode, checkpoint dict)."""
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    if ckpt.get("model_kind") == "conv_autoencoder":
        from ecg_models.baselines import from_checkpoint as ae_from_checkpoint

        return ae_from_checkpoint(path), ckpt
    from ecg_models.anomaly_detector import from_checkpoint

    return from_checkpoint(path), ckpt


def _scores(
    model: torch.nn.Module, data: DetectorArrays, attr: tuple[np.ndarray, np.ndarray] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Return (restoration scores, attribute deviation or zeros)."""
    scores, pred, _ = score_arrays(model, data)
    if attr is None or pred.shape[1] == 0:
        return scores, np.zeros_like(scores)
    return scores, attribute_deviation(pred, *attr)


def _operating_point(rest: np.ndarray, dev: np.ndarray, labels: np.ndarray, has_attr: bool) -> dict[str, Any]:
    """Choose score statistics, attribute use and threshold on validation data."""
    normal = labels == 0
    stats = {
        "rest_mean": float(rest[normal].mean()),
        "rest_std": float(rest[normal].std() + 1e-8),
        "dev_mean": float(dev[normal].mean()),
        "dev_std": float(dev[normal].std() + 1e-8),
    }
    auroc_rest = detection_metrics(rest, labels, np.inf)["auroc"]
    combined = combine_scores(rest, dev, stats, 1.0)
    auroc_comb = detection_metrics(combined, labels, np.inf)["auroc"] if has_attr else float("nan")
    use_attr = bool(has_attr and auroc_comb > auroc_rest)
    final = combined if use_attr else combine_scores(rest, dev, stats, 0.0)
    return {
        "score_stats": stats,
        "use_attribute_deviation": use_attr,
        "threshold": choose_threshold(final, labels),
        "val_auroc_restoration": auroc_rest,
        "val_auroc_combined": auroc_comb,
    }


def store_operating_point(
    model: torch.nn.Module, checkpoint: Path, data_dir: Path, attribute_cache: Path
) -> dict[str, Any]:
    """Recompute the operating point on fold 9 and write it into ``checkpoint`` (never fold 10)."""
    val_df = split_records(load_index(data_dir))["val"]
    val = arrays_from_index(val_df)
    has_attr = bool(getattr(model.cfg, "use_attribute_head", False))
    val_attr = normalised_targets(cached_attribute_table(val_df, attribute_cache)) if has_attr else None
    rest, dev = _scores(model, val, val_attr)
    op = _operating_point(rest, dev, val.labels, has_attr)
    op["threshold_restoration"] = choose_threshold(combine_scores(rest, dev, op["score_stats"], 0.0), val.labels)
    op["chosen_on"] = "validation (PTB-XL fold 9)"
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt["operating_point"] = op
    torch.save(ckpt, checkpoint)
    return op


def store_map_threshold(checkpoint: Path, threshold: float) -> None:
    """Save the anomaly-map level that marks an interval (chosen on fold-9 injections) in ``checkpoint``.

    Serving turns the map into per-lead intervals at this level (``inference.export`` copies it
    into the Triton config); it is the localization benchmark's best-Dice threshold on validation.
    """
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=False)
    ckpt["operating_point"]["map_threshold"] = float(threshold)
    ckpt["operating_point"]["map_threshold_chosen_on"] = "synthetic anomalies injected into fold-9 normals (best Dice)"
    torch.save(ckpt, checkpoint)


def evaluate_ptbxl(model: torch.nn.Module, data_dir: Path, attribute_cache: Path) -> dict[str, Any]:
    """Evaluate on fold 10 with the operating point from fold 9."""
    splits = split_records(load_index(data_dir))
    val_df, test_df = splits["val"], splits["test"]
    n_excluded_test = int((splits["excluded"]["fold"] == 10).sum())
    val = arrays_from_index(val_df)
    has_attr = bool(getattr(model.cfg, "use_attribute_head", False))
    val_attr = normalised_targets(cached_attribute_table(val_df, attribute_cache)) if has_attr else None
    op = _operating_point(*_scores(model, val, val_attr), val.labels, has_attr)
    t0 = time.time()
    test = arrays_from_index(test_df)
    rest, _ = _scores(model, test, None)
    seconds_per_ecg = (time.time() - t0) / max(len(test), 1)
    # Attribute targets (intervals measured with neurokit2) are computed outside the timed path.
    test_attr = normalised_targets(cached_attribute_table(test_df, attribute_cache)) if has_attr else None
    _, dev = _scores(model, test, test_attr) if has_attr else (rest, np.zeros_like(rest))
    return _report(
        rest, dev, test.labels, op, n_excluded_test, seconds_per_ecg, "PTB-XL fold 10 (operating point on fold 9)"
    )


def evaluate_challenge(model: torch.nn.Module, ckpt: dict[str, Any], root: Path) -> dict[str, Any]:
    """Evaluate on every labelled Challenge record with the checkpoint's stored operating point."""
    t0 = time.time()
    data, refused = arrays_from_challenge(root)
    rest, _ = _scores(model, data, None)
    seconds_per_ecg = (time.time() - t0) / max(len(data), 1)
    op = ckpt.get("operating_point")
    if op is None:
        raise ValueError("checkpoint has no stored operating_point; evaluate on PTB-XL or retrain")
    # No measured intervals for Challenge records here: use the restoration-only threshold.
    op = {**op, "use_attribute_deviation": False, "threshold": op["threshold_restoration"]}
    labelled = data.labels >= 0
    if len(set(data.labels[labelled].tolist())) < 2:
        raise ValueError(
            f"{root}: need labelled normal and abnormal records, got labels {sorted(set(data.labels.tolist()))}"
        )
    n_excluded = int((~labelled).sum()) + len(refused)
    return _report(
        rest[labelled],
        np.zeros(labelled.sum()),
        data.labels[labelled],
        op,
        n_excluded,
        seconds_per_ecg,
        f"Challenge directory {root}",
    )


def _report(
    rest: np.ndarray,
    dev: np.ndarray,
    labels: np.ndarray,
    op: dict[str, Any],
    n_excluded: int,
    seconds_per_ecg: float,
    split: str,
) -> dict[str, Any]:
    """Return the metrics dict for final scores at the chosen operating point."""
    weight = 1.0 if op["use_attribute_deviation"] else 0.0
    final = combine_scores(rest, dev, op["score_stats"], weight)
    metrics = detection_metrics(final, labels, op["threshold"])
    out: dict[str, Any] = {k: round(v, 4) for k, v in metrics.items()}
    out.update(
        {
            "n_normal": int((labels == 0).sum()),
            "n_abnormal": int((labels == 1).sum()),
            "n_excluded": n_excluded,
            "seconds_per_ecg": round(seconds_per_ecg, 4),
            "ci95": bootstrap_ci(final, labels, op["threshold"]),
            "auroc_restoration_only": round(detection_metrics(rest, labels, np.inf)["auroc"], 4),
            "auroc_with_attribute_deviation": round(
                detection_metrics(combine_scores(rest, dev, op["score_stats"], 1.0), labels, np.inf)["auroc"], 4
            )
            if dev.any()
            else None,
            "use_attribute_deviation": op["use_attribute_deviation"],
            "threshold": op["threshold"],
            "split": split,
        }
    )
    for key in ("val_auroc_restoration", "val_auroc_combined"):
        if key in op:
            out[key] = round(op[key], 4)
    return out


def evaluate_localization(
    model: torch.nn.Module, ckpt: dict[str, Any], data_dir: Path, seeds: int, kinds: tuple[str, ...]
) -> dict[str, Any]:
    """Run the localization ablation on fold-10 normals (every weight and threshold from fold 9)."""
    from training.localization_ablation import run_ablation
    from training.localization_benchmark import load_normals

    splits = split_records(load_index(data_dir))

    @torch.no_grad()
    def score_fn(arrays: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        data = DetectorArrays(arrays, [""] * len(arrays["record"]), np.zeros(len(arrays["record"]), dtype=np.int64), [])
        scores, _, maps = score_arrays(model, data, keep_maps=True)
        assert maps is not None
        return scores, maps

    # The fused map divides the detector's map by the served map threshold (inference.localization).
    map_threshold = float(ckpt["operating_point"]["map_threshold"])
    return run_ablation(
        score_fn, load_normals(splits["val"]), load_normals(splits["test"]), map_threshold, seeds=seeds, kinds=kinds
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Parse flags, evaluate, print the JSON line and return it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / ".." / "shared" / "data")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--localization", action="store_true", help="run the synthetic localization benchmark instead")
    parser.add_argument(
        "--attribute-cache", type=Path, default=REPO_ROOT / "training" / "runs" / "detector_attributes.csv"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", type=int, default=3, help="with --localization: injection seeds (mean, SD)")
    parser.add_argument(
        "--types", default="", help="with --localization: comma-separated injection types (default: all)"
    )
    parser.add_argument(
        "--store-map-threshold",
        action="store_true",
        help="with --localization: save the fold-9 best-Dice map threshold into the checkpoint (for serving)",
    )
    parser.add_argument(
        "--store-operating-point",
        action="store_true",
        help="recompute the fold-9 operating point and save it into the checkpoint",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    torch.set_num_threads(args.threads)
    model, ckpt = load_model(args.checkpoint)
    if args.store_operating_point:
        result = store_operating_point(model, args.checkpoint, args.data, args.attribute_cache)
    elif args.localization:
        from training.localization_benchmark import ANOMALY_TYPES

        kinds = tuple(args.types.split(",")) if args.types else ANOMALY_TYPES
        result = evaluate_localization(model, ckpt, args.data, args.seeds, kinds)
        if args.store_map_threshold:
            store_map_threshold(args.checkpoint, result["dice_threshold"])
    elif is_challenge_dir(args.data):
        result = evaluate_challenge(model, ckpt, args.data)
    else:
        result = evaluate_ptbxl(model, args.data, args.attribute_cache)
    result["checkpoint"] = str(args.checkpoint)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
