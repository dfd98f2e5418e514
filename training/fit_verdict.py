"""Fit and evaluate the served verdict's combination: ``python -m training.fit_verdict --data PATH [--write]``.

The served verdict (``inference.clinical.combined``) is a logistic combination of the detector's
z-score, the foundation model's abnormal logit and the measured statements (abnormal count, no sinus
rhythm). Steps, each on the shipped checkpoints through the in-process analyzer (the served code):

1. Features of PTB-XL fold 9 (validation: neither model trained on it) and fold 10 (test), and of
   every Challenge WFDB directory given with ``--external`` (default ``PATH/challenge-sample``),
   cached under ``--cache`` (``var/fit_verdict``) so a refit does not re-run the models.
2. Fit on fold 9 only: L2 logistic regression (C fixed beforehand, not tuned), with and without the
   foundation model. The operating point is chosen on leave-one-out probabilities of fold 9: the
   highest threshold at which the served rule (probability at or above it, or a major measured
   finding, or no sinus rhythm) reaches ``--target-sensitivity`` (0.90).
3. Report on fold 10 and the external set, nothing chosen there: AUROC with 95 % bootstrap CIs for
   each source alone, their rank average and the combination; sensitivity and specificity at the
   operating point (Wilson CIs); sensitivity per PTB-XL superclass / per Challenge diagnosis; ROC and
   reliability plots (PNG) in ``--plots`` (``docs/models/img``).
4. ``--write`` stores the fitted combination in ``inference/clinical/data/verdict_combiner.json``.

Truth is the clinical definition of ``training.evaluate_report.truth_is_normal``: NORM with at most
sinus rhythm or sinus arrhythmia beside it (Challenge: sinus rhythm / sinus arrhythmia only); any other
statement is abnormal. ECGs outside the intended use or with a technical problem are left out (they
get no AI verdict). The last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import logging
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from inference.analyzer import EcgInput, InProcessAnalyzer
from inference.clinical.combined import (
    COMBINER_PATH,
    DETECTOR_AND_MEASURED,
    FEATURES,
    LogisticHead,
    VerdictCombiner,
    VerdictEvidence,
    served_abnormal,
    verdict_evidence,
)
from inference.errors import InferenceError
from inference.preprocessing import LEADS_12
from training.data.challenge import is_challenge_dir, load_challenge_records
from training.data.ptbxl import EcgRecord
from training.evaluate_report import ptbxl_records, truth_is_normal, wilson

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"
C_REGULARISATION = 1.0  # fixed before looking at any result: 72 ECGs are too few to tune it
COLUMNS = (
    "record_id", "truth", "truth_codes", "superclasses", "excluded", "detector_z", "foundation_logit",
    "measured_major", "measured_minor", "no_sinus_rhythm", "ai_findings", "served_verdict", "measured_codes", "detector_version", "foundation_version",
)  # fmt: skip


def feature_rows(records: Iterable[EcgRecord], analyzer: InProcessAnalyzer) -> Iterator[dict[str, Any]]:
    """Yield one row per record: truth, the combination's inputs, the model versions."""
    for record in records:
        truth = frozenset(record.scp_codes)
        normal = truth_is_normal(truth)
        row: dict[str, Any] = {
            "record_id": record.record_id,
            "truth": "" if normal is None else "normal" if normal else "abnormal",
            "truth_codes": " ".join(sorted(truth)),
            "superclasses": " ".join(sorted(record.superclasses)),
        }
        ecg = EcgInput(record.signal, float(record.sample_rate_hz), LEADS_12, record.age_years, record.sex)
        try:
            result = analyzer.analyse(ecg)
        except InferenceError as exc:
            yield row | {"excluded": f"{type(exc).__name__}: {exc}"}
            continue
        clinical = result.clinical
        assert clinical is not None
        measured = [f for f in clinical.findings if f.source == "measured"]
        outside = [f.code for f in clinical.findings if f.category in ("technical", "intended-use")]
        evidence = verdict_evidence(result.detector, result.foundation, measured)
        yield row | {
            "excluded": " ".join(outside),
            "detector_z": evidence.detector_z,
            "foundation_logit": "" if evidence.foundation_logit is None else round(evidence.foundation_logit, 4),
            "measured_major": evidence.measured_major,
            "measured_minor": evidence.measured_minor,
            "ai_findings": sum(1 for f in clinical.findings if f.source == "foundation-model"),
            "served_verdict": clinical.verdict,
            "no_sinus_rhythm": int(evidence.no_sinus_rhythm),
            "measured_codes": " ".join(f.code for f in measured if f.abnormal),
            "detector_version": result.detector.model_version,
            "foundation_version": result.foundation.model_version if result.foundation else "",
        }


def cached_rows(
    name: str, records: Iterable[EcgRecord], analyzer: InProcessAnalyzer, cache: Path
) -> list[dict[str, Any]]:
    """Return the feature rows of one dataset, computed once and kept in ``cache/name.csv``."""
    path = cache / f"{name}.csv"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        rows = list(feature_rows(records, analyzer))
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
        logger.info("%s: %d records analysed, cached in %s", name, len(rows), path)
    with path.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def usable(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the rows with a clinical truth, analysed and within the intended use."""
    return [r for r in rows if r["truth"] and not r["excluded"] and r["detector_z"] != ""]


def row_evidence(row: dict[str, Any]) -> VerdictEvidence:
    """Return the combination's inputs of one cached row (the served bounds apply in ``features``)."""
    return VerdictEvidence(
        detector_z=float(row["detector_z"]),
        foundation_logit=float(row["foundation_logit"]) if row["foundation_logit"] != "" else None,
        measured_major=int(row["measured_major"]),
        measured_minor=int(row["measured_minor"]),
        no_sinus_rhythm=bool(int(row["no_sinus_rhythm"])),
    )


def matrix(rows: Sequence[dict[str, Any]], features: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Return the feature matrix (bounded as served) and the labels (1 = abnormal)."""
    x = []
    for r in rows:
        values = row_evidence(r).features()
        x.append([values[name] for name in features])
    return np.asarray(x, dtype=np.float64), np.asarray([r["truth"] == "abnormal" for r in rows], dtype=np.int64)


def fit_head(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    """Return the L2 logistic regression on these features (fixed C, no class weights)."""
    return LogisticRegression(C=C_REGULARISATION, max_iter=1000).fit(x, y)


def leave_one_out(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Return each ECG's probability from a fit without it."""
    out = np.empty(len(y))
    for i in range(len(y)):
        keep = np.arange(len(y)) != i
        out[i] = fit_head(x[keep], y[keep]).predict_proba(x[i : i + 1])[0, 1]
    return out


def hard_flags(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """Return which ECGs the served rule flags whatever the probability: a major finding, no sinus rhythm."""
    return np.array([served_abnormal(combined_flagged=False, evidence=row_evidence(r)) for r in rows], dtype=bool)


def threshold_for_sensitivity(probabilities: np.ndarray, y: np.ndarray, hard: np.ndarray, target: float) -> float:
    """Return the highest threshold at which the served rule (p >= t, or a hard flag) reaches ``target``.

    Abnormal ECGs the hard rules already flag count as found; the rest must reach the threshold.
    """
    needed = max(0, math.ceil(target * int(np.sum(y == 1))) - int(np.sum(hard & (y == 1))))
    rest = np.sort(probabilities[(y == 1) & ~hard])[::-1]
    if needed == 0 or len(rest) == 0:
        return float(rest[0]) if len(rest) else 0.5
    return float(rest[min(needed, len(rest)) - 1])


def bootstrap_auroc(y: np.ndarray, s: np.ndarray, n: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Return AUROC with a percentile-bootstrap 95 % CI (None when one class is missing)."""
    if len(set(y.tolist())) < 2:
        return {"auroc": None, "ci95": None}
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        if len(set(y[idx].tolist())) == 2:
            values.append(roc_auc_score(y[idx], s[idx]))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return {"auroc": round(float(roc_auc_score(y, s)), 4), "ci95": [round(float(lo), 4), round(float(hi), 4)]}


def rank_average(*scores: np.ndarray) -> np.ndarray:
    """Return the mean of each score's ranks (0-1), the untrained combination the issue measured."""
    from scipy.stats import rankdata  # noqa: PLC0415 only here

    return np.mean([rankdata(s) / len(s) for s in scores], axis=0)


def head_of(model: LogisticRegression, features: Sequence[str], threshold: float) -> LogisticHead:
    """Return the served form of a fitted regression."""
    weights = {name: round(float(w), 5) for name, w in zip(features, model.coef_[0], strict=True)}
    return LogisticHead(round(float(model.intercept_[0]), 5), weights, round(threshold, 5))


def operating_metrics(y: np.ndarray, flagged: np.ndarray) -> dict[str, Any]:
    """Return sensitivity and specificity with Wilson CIs."""
    tp, pos = int(np.sum(flagged & (y == 1))), int(np.sum(y == 1))
    tn, neg = int(np.sum(~flagged & (y == 0))), int(np.sum(y == 0))
    return {
        "sensitivity": round(tp / pos, 4) if pos else None,
        "sensitivity_ci95": wilson(tp, pos),
        "specificity": round(tn / neg, 4) if neg else None,
        "specificity_ci95": wilson(tn, neg),
        "n_abnormal": pos,
        "n_normal": neg,
    }


def sensitivity_by_group(rows: Sequence[dict[str, Any]], flagged: np.ndarray, key: str) -> dict[str, Any]:
    """Return, per code of ``key`` (superclasses or truth codes), how many abnormal ECGs were flagged."""
    groups: dict[str, list[bool]] = {}
    for row, flag in zip(rows, flagged, strict=True):
        if row["truth"] != "abnormal":
            continue
        for code in row[key].split():
            groups.setdefault(code, []).append(bool(flag))
    return {
        code: {"flagged": sum(v), "n": len(v), "sensitivity": round(sum(v) / len(v), 3)}
        for code, v in sorted(groups.items(), key=lambda item: -len(item[1]))
        if len(v) >= 2
    }


def evaluate(
    name: str, rows: Sequence[dict[str, Any]], combiner: VerdictCombiner, plots: Path | None
) -> dict[str, Any]:
    """Return every figure of one held-out set (nothing is chosen here)."""
    rows = usable(rows)
    x_full, y = matrix(rows, FEATURES)
    x_det, _ = matrix(rows, DETECTOR_AND_MEASURED)
    features = dict(zip(FEATURES, x_full.T, strict=True))
    combined = np.array([combiner.full.probability(dict(zip(FEATURES, row, strict=True)))[0] for row in x_full])
    det_measured = np.array(
        [combiner.detector_and_measured.probability(dict(zip(DETECTOR_AND_MEASURED, r, strict=True)))[0] for r in x_det]
    )
    hard = hard_flags(rows)
    flagged = (combined >= combiner.full.threshold) | hard
    out: dict[str, Any] = {
        "n": len(rows),
        "auroc": {
            "detector": bootstrap_auroc(y, features["detector_z"]),
            "foundation": bootstrap_auroc(y, features["foundation_logit"]),
            "measured_findings": bootstrap_auroc(y, features["measured_major"] * 4 + features["measured_minor"]),
            "rank_average_detector_foundation": bootstrap_auroc(
                y, rank_average(features["detector_z"], features["foundation_logit"])
            ),
            "combined": bootstrap_auroc(y, combined),
            "combined_without_foundation": bootstrap_auroc(y, det_measured),
        },
        "operating_point": operating_metrics(y, flagged),
        "operating_point_without_foundation": operating_metrics(
            y, (det_measured >= combiner.detector_and_measured.threshold) | hard
        ),
        "operating_point_probability_alone": operating_metrics(y, combined >= combiner.full.threshold),
        "served_verdict_as_analysed": operating_metrics(y, np.array([r["served_verdict"] != "normal" for r in rows])),
        "sensitivity_by_superclass": sensitivity_by_group(rows, flagged, "superclasses"),
        "sensitivity_by_statement": sensitivity_by_group(rows, flagged, "truth_codes"),
        "calibration": calibration(y, combined),
    }
    if plots is not None:
        plot_roc_and_calibration(
            name, y, {"detector": features["detector_z"], "foundation": features["foundation_logit"], "combined": combined},
            combined, combiner.full.threshold, plots,
        )  # fmt: skip
    return out


def calibration(y: np.ndarray, p: np.ndarray, bins: int = 5) -> dict[str, Any]:
    """Return the expected calibration error and the reliability table (equal-width bins)."""
    edges = np.linspace(0, 1, bins + 1)
    table, ece = [], 0.0
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        members = (p >= lo) & ((p < hi) if hi < 1 else (p <= hi))
        if not members.any():
            continue
        mean_p, observed = float(p[members].mean()), float(y[members].mean())
        ece += members.mean() * abs(mean_p - observed)
        table.append(
            {
                "bin": [round(lo, 2), round(hi, 2)],
                "n": int(members.sum()),
                "mean_p": round(mean_p, 3),
                "observed": round(observed, 3),
            }
        )
    return {"ece": round(float(ece), 4), "bins": table}


def plot_roc_and_calibration(
    name: str, y: np.ndarray, scores: dict[str, np.ndarray], combined: np.ndarray, threshold: float, out: Path
) -> None:
    """Write ``verdict_<name>.png``: ROC curves of each source and the combination, and reliability."""
    import matplotlib  # noqa: PLC0415 plots only

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415 plots only
    from sklearn.metrics import roc_curve  # noqa: PLC0415 plots only

    out.mkdir(parents=True, exist_ok=True)
    fig, (roc_ax, cal_ax) = plt.subplots(1, 2, figsize=(9, 4))
    for label, s in scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        roc_ax.plot(fpr, tpr, label=f"{label} (AUROC {roc_auc_score(y, s):.3f})")
    flagged = combined >= threshold
    roc_ax.plot(np.mean(flagged[y == 0]), np.mean(flagged[y == 1]), "ko", label="served operating point")
    roc_ax.plot([0, 1], [0, 1], ":", color="grey")
    roc_ax.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC, {name} (n={len(y)})")
    roc_ax.legend(fontsize=7, loc="lower right")
    table = calibration(y, combined)["bins"]
    cal_ax.plot([0, 1], [0, 1], ":", color="grey")
    cal_ax.plot([b["mean_p"] for b in table], [b["observed"] for b in table], "o-")
    for b in table:
        cal_ax.annotate(
            str(b["n"]), (b["mean_p"], b["observed"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
        )
    cal_ax.set(xlabel="combined probability (bin mean)", ylabel="share abnormal", title="reliability (n per bin)")
    fig.tight_layout()
    fig.savefig(out / f"verdict_{name}.png", dpi=90)
    plt.close(fig)


def fit(rows: Sequence[dict[str, Any]], target: float) -> tuple[VerdictCombiner, dict[str, Any]]:
    """Fit both heads on the validation rows; return the combination and its validation figures."""
    rows = usable(rows)
    versions = {(r["detector_version"], r["foundation_version"]) for r in rows}
    if len(versions) != 1:
        raise ValueError(f"validation rows come from several model versions: {sorted(versions)}")
    ((detector_version, foundation_version),) = versions
    heads, figures = {}, {}
    for head_name, features in (("full", FEATURES), ("detector_and_measured", DETECTOR_AND_MEASURED)):
        x, y = matrix(rows, features)
        loo = leave_one_out(x, y)
        hard = hard_flags(rows)
        threshold = threshold_for_sensitivity(loo, y, hard, target)
        heads[head_name] = head_of(fit_head(x, y), features, threshold)
        figures[head_name] = {
            "loo_auroc": bootstrap_auroc(y, loo),
            "loo_operating_point": operating_metrics(y, (loo >= threshold) | hard),
            "weights": heads[head_name].weights,
            "intercept": heads[head_name].intercept,
            "threshold": heads[head_name].threshold,
        }
    n_abnormal = sum(r["truth"] == "abnormal" for r in rows)
    combiner = VerdictCombiner(
        version=f"verdict-lr-{detector_version}-{foundation_version}",
        detector_version=detector_version,
        foundation_version=foundation_version,
        full=heads["full"],
        detector_and_measured=heads["detector_and_measured"],
        fitted_on=(
            f"PTB-XL subset fold 9 (validation), {len(rows)} ECGs ({n_abnormal} abnormal, clinical definition); "
            f"L2 logistic regression C={C_REGULARISATION}; threshold: leave-one-out sensitivity >= {target} "
            "of the served rule (probability at or above it, a major measured finding, or no sinus rhythm)"
        ),
    )
    return combiner, figures


def _file_digest(path: Path) -> str:
    """Return the first 12 hex digits of the file's SHA-256 (names the cache of its features)."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="folder holding PTB-XL-layout folders")
    parser.add_argument("--external", type=Path, action="append", default=None, help="Challenge WFDB directory")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "var" / "fit_verdict")
    parser.add_argument("--plots", type=Path, default=REPO_ROOT / "docs" / "models" / "img")
    parser.add_argument("--target-sensitivity", type=float, default=0.90)
    parser.add_argument("--write", action="store_true", help="store the fitted combination in --out")
    parser.add_argument(
        "--out",
        type=Path,
        default=COMBINER_PATH,
        help="where --write stores it: the serving one (default), or verdict_combiner-<name>.json beside it "
        "for a candidate's model versions (a shadow candidate then gets a combined verdict)",
    )
    parser.add_argument("--device", default="cpu", help="torch device of the in-process models (cpu only here)")
    parser.add_argument("--detector", type=Path, default=WEIGHTS / "detector.pt")
    parser.add_argument("--foundation", type=Path, default=WEIGHTS / "foundation.pt")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.device != "cpu":
        logger.warning("the in-process analyzer runs on the CPU; --device %s is ignored here", args.device)
    analyzer = InProcessAnalyzer(detector_checkpoint=args.detector, foundation_checkpoint=args.foundation)
    # The features depend on the checkpoints: one cache folder per pair, never another model's rows.
    cache = args.cache / f"{_file_digest(args.detector)}-{_file_digest(args.foundation)}"
    validation = cached_rows("ptbxl_fold9", ptbxl_records(args.data, 9), analyzer, cache)
    test = cached_rows("ptbxl_fold10", ptbxl_records(args.data, 10), analyzer, cache)
    externals = args.external or [p for p in [args.data / "challenge-sample"] if is_challenge_dir(p)]
    external_rows = {p.name: cached_rows(p.name, load_challenge_records(p), analyzer, cache) for p in externals}
    combiner, validation_figures = fit(validation, args.target_sensitivity)
    result: dict[str, Any] = {
        "combiner": combiner.to_json(),
        "validation_fold9": validation_figures,
        "test_fold10": evaluate("ptbxl_fold10", test, combiner, args.plots),
    }
    for name, rows in external_rows.items():
        result[f"external_{name}"] = evaluate(name, rows, combiner, args.plots)
    if args.write:
        args.out.write_text(json.dumps(combiner.to_json(), indent=1) + "\n", encoding="utf-8")
        logger.info("wrote %s", args.out)
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
