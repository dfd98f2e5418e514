"""Compare detector training recipes over seeds: ``python -m training.compare_detectors --runs DIR... --data PATH``.

Each ``--runs`` argument is a glob of run directories of one recipe, one per seed (for example
``training/runs/detector_v2_s*``); every run's ``best.pt`` (chosen on fold 9 by the training loop) is
scored on PTB-XL fold 9 (validation) and fold 10 (test) under the clinical labels
(``training.data.ptbxl.clinical_label``), so recipes trained with different normal definitions are
read against the same truth. Per recipe: AUROC per seed, mean ± SD over seeds, and the 95 % bootstrap
CI of the seed-averaged z-score (the scores of the seeds, z-scored against fold-9 normals, averaged),
plus the choices each run made on validation. Nothing is chosen on fold 10. The last stdout line is
one JSON object.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_models.anomaly_detector import from_checkpoint
from training.data.splits import load_index, split_records
from training.detector_data import DetectorArrays, arrays_from_index, bootstrap_ci, detection_metrics, score_arrays

logger = logging.getLogger(__name__)


def clinical_arrays(data: Path) -> dict[str, DetectorArrays]:
    """Return fold 9 and fold 10 under the clinical labels."""
    index = load_index(data)
    splits = split_records(index.assign(label=index["clinical_label"]))
    return {"val": arrays_from_index(splits["val"]), "test": arrays_from_index(splits["test"])}


def z_scores(path: Path, arrays: dict[str, DetectorArrays]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Return each split's scores z-scored against the fold-9 normals, and the run's validation choices."""
    model = from_checkpoint(path).eval()
    with torch.inference_mode():
        raw = {name: score_arrays(model, data)[0] for name, data in arrays.items()}
    normal = arrays["val"].labels == 0
    mean, std = raw["val"][normal].mean(), raw["val"][normal].std() + 1e-8
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    choices = {
        "epoch": ckpt.get("epoch"),
        "beat_score_weight": model.cfg.beat_score_weight,
        "score_uncertainty": model.cfg.score_uncertainty,
        "val_auroc_in_training": ckpt.get("best_metric", {}).get("val_auroc"),
    }
    return {name: (r - mean) / std for name, r in raw.items()}, choices


def recipe_figures(runs: list[Path], arrays: dict[str, DetectorArrays]) -> dict[str, Any]:
    """Return per-seed and seed-summary AUROCs of one recipe."""
    per_seed, sums = [], {name: np.zeros(len(a)) for name, a in arrays.items()}
    for run in runs:
        scores, choices = z_scores(run / "best.pt", arrays)
        row = {"run": run.name, **choices}
        for name, data in arrays.items():
            labelled = data.labels >= 0
            row[f"{name}_auroc"] = round(
                detection_metrics(scores[name][labelled], data.labels[labelled], np.inf)["auroc"], 4
            )
            sums[name] += scores[name]
        per_seed.append(row)
        logger.info(json.dumps(row))
    out: dict[str, Any] = {"seeds": per_seed}
    for name, data in arrays.items():
        values = [r[f"{name}_auroc"] for r in per_seed]
        labelled = data.labels >= 0
        mean_scores = sums[name][labelled] / len(runs)
        ci = bootstrap_ci(mean_scores, data.labels[labelled], np.inf)
        out[name] = {
            "auroc_mean": round(float(np.mean(values)), 4),
            "auroc_sd": round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 4),
            "seed_average_auroc": round(detection_metrics(mean_scores, data.labels[labelled], np.inf)["auroc"], 4),
            "seed_average_auroc_ci95": ci.get("auroc"),
            "n": int(labelled.sum()),
        }
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", action="append", required=True, help="glob of one recipe's run directories")
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="scoring runs on the CPU here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    arrays = clinical_arrays(args.data)
    result = {}
    for pattern in args.runs:
        pattern_path = Path(pattern)
        runs = sorted(p for p in pattern_path.parent.glob(pattern_path.name) if (p / "best.pt").is_file())
        if not runs:
            raise SystemExit(f"no run with best.pt matches {pattern}")
        result[pattern] = recipe_figures(runs, arrays)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
