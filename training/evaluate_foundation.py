"""Evaluate the foundation model: ``python -m training.evaluate_foundation --data PATH [--checkpoint FILE]``.

PATH is a folder holding PTB-XL-layout folders (test = fold 10; train folds only feed the
baselines' references) or a PhysioNet/CinC Challenge WFDB directory (every labelled record is a
test record; superclasses, statements and text are not scored there, only normal/abnormal).

Reported on the test records, all preprocessed by ``inference.preprocessing.foundation_inputs``
(re-run here from the raw files and timed): normal/abnormal AUROC (+ bootstrap CI, and F1 /
sensitivity / specificity at the fold-9 threshold stored in the checkpoint), macro superclass
AUROC (+ CI, per class), macro statement AUROC over statements with >= 3 test positives, the
report text (greedy and beam: BLEU-4, ROUGE-L, label check by parsing text back to codes),
AUROC per lead subset, the baselines (supervised 1-D ResNet from scratch, frozen-encoder linear
probe), and seconds per ECG. The last stdout line is one JSON object.
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

from ecg_models.foundation import FoundationGreedyGenerator, beam_decode, build_foundation, from_checkpoint
from inference.preprocessing import LEADS_12, foundation_inputs
from training.data.challenge import is_challenge_dir
from training.data.ptbxl import load_ptbxl_record
from training.data.splits import load_index, split_records
from training.detector_data import detection_metrics
from training.finetune_foundation import predict
from training.foundation_data import (
    DEFAULT_DATA,
    LEAD_SUBSETS,
    FoundationArrays,
    bootstrap_auroc,
    detection_ci,
    load_challenge_arrays,
    load_ptbxl_arrays,
    macro_auroc,
    safe_auroc,
    subset_mask,
)
from training.foundation_text import ReportBuilder, bleu4, decode, label_check, load_tokenizer, report_text, rouge_l

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"
DEFAULT_CHECKPOINT = WEIGHTS / "foundation.pt"


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _r(x: float) -> float | None:
    return None if x is None or np.isnan(x) else round(float(x), 4)


def timed_preprocessing(data_dir: Path, test: FoundationArrays) -> tuple[float, float]:
    """Re-read and preprocess the PTB-XL test records; return (seconds per ECG, max diff vs cache)."""
    index = load_index(data_dir)
    frame = split_records(index)["test"]
    frame = frame[frame["record_id"].isin(set(test.record_ids))]
    pos = {r: i for i, r in enumerate(test.record_ids)}
    start = time.perf_counter()
    diff = 0.0
    for _, row in frame.iterrows():
        rec = load_ptbxl_record(Path(row["root"]), row, 500 if isinstance(row.get("filename_hr"), str) else 100)
        inp = foundation_inputs(rec.signal, rec.sample_rate_hz, LEADS_12)
        diff = max(diff, float(np.abs(inp.signal - test.signal[pos[rec.record_id]]).max()))
    return (time.perf_counter() - start) / max(len(frame), 1), diff


def text_metrics(
    model: Any, tok: Any, builder: ReportBuilder, data: FoundationArrays, data_dir: Path | None = None
) -> dict[str, Any]:
    """Greedy (the served generator) and beam reports of the records with known codes.

    A decoder conditioned on measured findings gets each record's measured vector
    (``training.measured_cache``, from the raw signals under ``data_dir``).
    """
    idx = np.flatnonzero(data.full_codes)
    if len(idx) == 0:
        return {}
    x, m = torch.from_numpy(data.signal[idx]), torch.from_numpy(data.lead_mask[idx])
    measured = None
    if model.cfg.condition_on_measured:
        from training.measured_cache import ptbxl_measured, vectors

        ids_ = data.record_ids[idx]
        measured = torch.from_numpy(vectors(ptbxl_measured(data_dir or DEFAULT_DATA, ids_), ids_))
    gen = torch.jit.script(FoundationGreedyGenerator(model).eval())
    start = time.perf_counter()
    with torch.no_grad():
        ids = gen(x, m, measured).numpy()
    greedy_s = (time.perf_counter() - start) / len(idx)
    greedy = [report_text(tok, builder, row) for row in ids]
    beam = [decode(tok, row) for row in beam_decode(model, x, m, beam=3, measured=measured)]
    refs = [str(t) for t in data.texts[idx]]
    hyp = [g[0] for g in greedy]
    codes = [list(c) for c in data.codes[idx]]
    check = label_check(builder, hyp, codes)
    check_beam = label_check(builder, beam, codes)
    examples = [
        {"record_id": str(data.record_ids[i]), "reference": refs[k], "generated": hyp[k]} for k, i in enumerate(idx[:5])
    ]
    return {
        "bleu4": _r(bleu4(hyp, refs)),
        "rouge_l": _r(rouge_l(hyp, refs)),
        "label_f1_from_text": _r(check["macro_f1"]),
        "label_check": check,
        "beam": {
            "bleu4": _r(bleu4(beam, refs)),
            "rouge_l": _r(rouge_l(beam, refs)),
            "label_f1_from_text": _r(check_beam["macro_f1"]),
        },
        "n_text": len(idx),
        "n_empty_or_unparsed": int(sum(bool(g[1]) for g in greedy)),
        "exact_match": _r(float(np.mean([h == r for h, r in zip(hyp, refs, strict=True)]))),
        "seconds_per_report_batch": _r(greedy_s),
        "examples": examples,
    }


def classification_metrics(
    a: np.ndarray, s: np.ndarray, st: np.ndarray, data: FoundationArrays, threshold: float
) -> dict[str, Any]:
    y = data.label
    prob = _sigmoid(a)
    out: dict[str, Any] = {"auroc_normal_abnormal": _r(safe_auroc(y.astype(float), prob))}
    if len(np.unique(y)) == 2:
        out["auroc_normal_abnormal_ci95"] = bootstrap_auroc(y.astype(float), prob)
        out["at_threshold"] = {k: _r(v) for k, v in detection_metrics(prob, y, threshold).items() if k != "auroc"}
        out["at_threshold_ci95"] = {k: v for k, v in detection_ci(prob, y, threshold).items() if k != "auroc"}
    if not np.isnan(data.superclass).all():
        mac, cols = macro_auroc(data.superclass, s)
        out["macro_auroc_superclass"] = _r(mac)
        out["macro_auroc_superclass_ci95"] = bootstrap_auroc(data.superclass, s)
        out["auroc_superclass"] = {
            name: _r(safe_auroc(data.superclass[:, j], s[:, j]))
            for j, name in enumerate(("NORM", "MI", "STTC", "CD", "HYP"))
        }
        full = data.full_codes
        if st.shape[1] and full.any():
            mac_st, cols_st = macro_auroc(data.statements[full], st[full], min_pos=3)
            out["macro_auroc_statements"] = _r(mac_st)
            out["statements_scored"] = [data.statement_codes[j] for j in cols_st]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--baseline", type=Path, default=WEIGHTS / "resnet1d_baseline.pt")
    parser.add_argument("--limit", type=int, default=0, help="score only the first N test records (smoke tests)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    model = from_checkpoint(args.checkpoint)
    tok = load_tokenizer(args.checkpoint.parent / ckpt["tokenizer"])
    threshold = float(ckpt["operating_point"]["threshold_prob_abnormal"])
    result: dict[str, Any] = {"checkpoint": args.checkpoint.name, "data": str(args.data)}

    challenge = is_challenge_dir(args.data)
    if challenge:
        builder = ReportBuilder.from_root(REPO_ROOT / "samples" / "ptbxl")  # scp_statements.csv shipped in the repo
        test, refused = load_challenge_arrays(args.data, builder)
        test = test.subset(np.flatnonzero(test.label >= 0))
        result["refused"] = refused[:20]
        prep_s, prep_diff = float("nan"), 0.0
    else:
        arrays, builder, sid = load_ptbxl_arrays(args.data)
        test = arrays.where("test")
        result["data_split_id"] = sid
        result["split_matches_checkpoint"] = sid == ckpt.get("data_split_id")
        prep_s, prep_diff = timed_preprocessing(args.data, test)
    if args.limit:
        test = test.subset(np.arange(min(args.limit, len(test))))
    result["n_test"] = len(test)
    result["n_normal"] = int((test.label == 0).sum())
    result["n_abnormal"] = int((test.label == 1).sum())

    start = time.perf_counter()
    a, s, st, _ = predict(model, test.signal, test.lead_mask, batch=32)
    model_s = (time.perf_counter() - start) / max(len(test), 1)
    result.update(classification_metrics(a, s, st, test, threshold))
    result["auroc_by_lead_subset"] = {}
    result["macro_auroc_superclass_by_lead_subset"] = {}
    for name in LEAD_SUBSETS:
        mask = subset_mask(test.lead_mask, name)
        ok = mask.any(1)
        sub = test.subset(np.flatnonzero(ok))
        pa, ps, _, _ = predict(model, sub.signal, mask[ok], batch=32)
        result["auroc_by_lead_subset"][name] = _r(safe_auroc(sub.label.astype(float), pa))
        if not challenge:
            result["macro_auroc_superclass_by_lead_subset"][name] = _r(macro_auroc(sub.superclass, ps)[0])

    if not challenge:
        text = text_metrics(model, tok, builder, test, args.data)
        result.update({k: v for k, v in text.items() if k != "examples"})
        result["text_examples"] = text.get("examples", [])
    else:
        result.update({"bleu4": None, "rouge_l": None, "label_f1_from_text": None})

    # Baselines on the same test records.
    baselines: dict[str, Any] = {}
    if args.baseline.exists():
        from training.foundation_baselines import predict_resnet, resnet_from_checkpoint

        ra, rs = predict_resnet(resnet_from_checkpoint(args.baseline), test)
        baselines["resnet1d_scratch"] = {
            "auroc_normal_abnormal": _r(safe_auroc(test.label.astype(float), ra)),
            "auroc_normal_abnormal_ci95": bootstrap_auroc(test.label.astype(float), ra),
        }
        if not challenge:
            baselines["resnet1d_scratch"]["macro_auroc_superclass"] = _r(macro_auroc(test.superclass, rs)[0])
            baselines["resnet1d_scratch"]["macro_auroc_superclass_ci95"] = bootstrap_auroc(test.superclass, rs)
    if ckpt.get("probe"):
        probe = build_foundation(ckpt["model_config"])
        state = probe.state_dict()
        state.update({k: v.float() for k, v in ckpt["probe"]["model"].items()})
        probe.load_state_dict(state)
        pa, ps, _, _ = predict(probe.eval(), test.signal, test.lead_mask, batch=32)
        baselines["linear_probe_frozen_encoder"] = {
            "auroc_normal_abnormal": _r(safe_auroc(test.label.astype(float), pa)),
            "auroc_normal_abnormal_ci95": bootstrap_auroc(test.label.astype(float), pa),
        }
        if not challenge:
            baselines["linear_probe_frozen_encoder"]["macro_auroc_superclass"] = _r(macro_auroc(test.superclass, ps)[0])
            baselines["linear_probe_frozen_encoder"]["macro_auroc_superclass_ci95"] = bootstrap_auroc(
                test.superclass, ps
            )
    baselines["full_finetune"] = {k: result.get(k) for k in ("auroc_normal_abnormal", "macro_auroc_superclass")}
    result["baselines"] = baselines
    result["preprocessing_seconds_per_ecg"] = _r(prep_s)
    result["preprocessing_matches_cache_max_abs_diff"] = prep_diff
    result["model_seconds_per_ecg_batch32"] = _r(model_s)
    text_s = result.get("seconds_per_report_batch") or 0.0
    result["seconds_per_ecg"] = _r((0.0 if np.isnan(prep_s) else prep_s) + model_s + text_s)
    result["eval_wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(result, default=str))
    return result


if __name__ == "__main__":
    main()
