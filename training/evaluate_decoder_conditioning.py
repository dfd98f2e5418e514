"""How often the generated report contradicts the measured findings, before vs after conditioning.

``python -m training.evaluate_decoder_conditioning [--before CKPT] [--after CKPT] [--out FILE.json]``

On PTB-XL fold 10 (test) and on ``../shared/data/challenge-sample`` (external: other hospitals,
never tuned on), each model's greedy report (what the served generator writes) is split into
sentences and checked against the ECG's measurements with
``inference.clinical.decoder_check.decoder_text_check``. Evidence: the measurements and measured
findings of the raw signal (``training.measured_cache``); ``abnormal`` = a measured finding is
abnormal or the foundation model's probability is at or above its operating point (the heads are
the same in both models). Also counted: a sinus statement on a measured AF/flutter, and a bundle
branch block named in the text that the measured findings do not have. Reporting only: nothing
here selects or tunes anything.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ecg_models.foundation import FoundationGreedyGenerator, from_checkpoint
from inference.clinical.decoder_check import SNOMED_AF_FLUTTER, Evidence, decoder_text_check
from training.foundation_data import DEFAULT_DATA, RUNS, FoundationArrays, load_challenge_arrays, load_ptbxl_arrays
from training.foundation_text import ReportBuilder, decode, label_check, load_tokenizer
from training.measured_cache import MeasuredRecord, challenge_measured, ptbxl_measured, vectors

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
SINUS_CODES = frozenset({"SR", "SBRAD", "STACH", "SARRH"})
# Bundle branch blocks in the text -> the measured SNOMED codes that would support them.
BBB_SUPPORT = {
    "CRBBB": {"59118001"},
    "IRBBB": {"713426002", "59118001"},
    "CLBBB": {"164909002"},
    "ILBBB": {"251120003", "164909002"},
}


@torch.no_grad()
def generate(ckpt_path: Path, arrays: FoundationArrays, measured: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Greedy texts and abnormal probabilities of every ECG with one checkpoint."""
    model = from_checkpoint(ckpt_path).eval()
    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    tok = load_tokenizer(ckpt_path.parent / ckpt["tokenizer"])
    gen = FoundationGreedyGenerator(model).eval()
    texts: list[str] = []
    probs: list[np.ndarray] = []
    for i in range(0, len(arrays), 64):
        x = torch.from_numpy(arrays.signal[i : i + 64])
        m = torch.from_numpy(arrays.lead_mask[i : i + 64])
        meas = torch.from_numpy(measured[i : i + 64]) if model.condition_on_measured else None
        texts.extend(decode(tok, row.tolist()) for row in gen(x, m, meas))
        probs.append(model(x, m)[0].sigmoid().numpy())
    return texts, np.concatenate(probs) if probs else np.zeros(0)


def contradictions(
    texts: list[str], records: list[MeasuredRecord], prob: np.ndarray, threshold: float
) -> dict[str, Any]:
    """Count the generated sentences the measurements contradict."""
    n_sentences = n_coded = n_contradicted = ecgs_with = sinus_on_af = bbb_unmeasured = 0
    by_code: Counter[str] = Counter()
    for text, rec, p in zip(texts, records, prob, strict=True):
        abnormal = any(f.abnormal for f in rec.findings) or bool(p >= threshold)
        evidence = Evidence(measurements=rec.measurements, measured=rec.findings, abnormal=abnormal)
        checked = decoder_text_check(text, evidence)
        bad = [s for s in checked if s.removed_because]
        n_sentences += len(checked)
        n_coded += sum(s.code is not None for s in checked)
        n_contradicted += len(bad)
        ecgs_with += bool(bad)
        by_code.update(s.code or "?" for s in bad)
        codes = {s.code for s in checked if s.code}
        snomed = {f.snomed for f in rec.findings if f.snomed}
        sinus_on_af += bool(codes & SINUS_CODES and snomed & SNOMED_AF_FLUTTER)
        bbb_unmeasured += sum(1 for c, ok in BBB_SUPPORT.items() if c in codes and not snomed & ok)
    return {
        "ecgs": len(texts),
        "sentences": n_sentences,
        "coded_sentences": n_coded,
        "contradicted_sentences": n_contradicted,
        "ecgs_with_a_contradiction": ecgs_with,
        "contradicted_by_code": dict(by_code.most_common()),
        "sinus_on_measured_af_flutter": sinus_on_af,
        "bbb_named_not_measured": bbb_unmeasured,
    }


def evaluate(models: dict[str, Path], data_dir: Path, challenge: Path) -> dict[str, Any]:
    """Contradiction counts (and fold-10 label check) of each named checkpoint on both test sets."""
    arrays, builder, _ = load_ptbxl_arrays(data_dir)
    test = arrays.where("test")
    sets: dict[str, tuple[FoundationArrays, dict[str, MeasuredRecord]]] = {
        "ptbxl_fold10": (test, ptbxl_measured(data_dir, test.record_ids)),
    }
    if challenge.is_dir():
        ch, refused = load_challenge_arrays(challenge, ReportBuilder.from_root(Path(arrays_root(data_dir))))
        if refused:
            logger.warning("challenge records refused by preprocessing: %s", refused)
        sets["challenge_sample"] = (ch, challenge_measured(challenge))
    threshold = float(
        torch.load(next(iter(models.values())), map_location="cpu", weights_only=False)["operating_point"][
            "threshold_prob_abnormal"
        ]
    )
    out: dict[str, Any] = {}
    for name, (data, measured) in sets.items():
        records = [measured[str(r)] for r in data.record_ids]
        vec = vectors(measured, data.record_ids)
        out[name] = {"measured_prevalence": {k: int(v) for k, v in zip(*_prevalence(vec), strict=True)}}
        for label, path in models.items():
            texts, prob = generate(path, data, vec)
            res = contradictions(texts, records, prob, threshold)
            if data.full_codes.any():
                res["label_check_macro_f1"] = round(float(label_check(builder, texts, list(data.codes))["macro_f1"]), 4)
            res["examples"] = texts[:3]
            out[name][label] = res
    return out


def arrays_root(data_dir: Path) -> Path:
    """A PTB-XL root under ``data_dir`` (for ``scp_statements.csv``)."""
    from training.data.ptbxl import discover_ptbxl_roots

    return discover_ptbxl_roots(Path(data_dir))[0]


def _prevalence(vec: np.ndarray) -> tuple[list[str], list[int]]:
    from inference.clinical.conditioning import MEASURED_FINDINGS

    return [name for _, name in MEASURED_FINDINGS], vec.sum(0).astype(int).tolist()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", type=Path, default=RUNS / "foundation_decoder_conditioning" / "start.pt")
    parser.add_argument("--after", type=Path, default=REPO_ROOT / "ecg_models" / "weights" / "foundation.pt")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--control", type=Path, default=None, help="also the fine-tune without the measured token")
    parser.add_argument("--challenge", type=Path, default=DEFAULT_DATA / "challenge-sample")
    parser.add_argument("--out", type=Path, default=RUNS / "foundation_decoder_conditioning" / "contradictions.json")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    started = time.time()
    models = {"before": args.before, "after": args.after} | ({"control": args.control} if args.control else {})
    result = evaluate(models, args.data_dir, args.challenge)
    result["seconds"] = round(time.time() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
