"""Labels to re-check first: ``python -m training.foundation_label_audit --data PATH --out FILE.csv``.

The label-audit use of active learning (docs/models/foundation.md): every labelled train-fold ECG
under ``--data`` (PTB-XL layout, which ``manage.py export_annotations`` also writes, so reviewed
labels can be audited the same way) is scored by a logistic regression on frozen CPC embeddings
that never saw it (cross-fitted), and ranked by ``training.foundation_active.rank_for_audit``
(disagreement of the prediction with the given normal/abnormal label). Writes a CSV, most likely
wrong first: rank, record id, whether its full SCP codes are known (else the label is a
normal-list NORM), given label, out-of-fold P(abnormal), disagreement.
Prints the top rows; the last line is JSON. Only fold 1-8 (train) labels are audited: validation
and test labels stay untouched by anything trained here.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from training.config import resolve_device
from training.foundation_active import audit_priority, rank_for_audit
from training.foundation_data import DEFAULT_DATA, RUNS, load_ptbxl_arrays
from training.foundation_label_noise import out_of_fold_probability
from training.foundation_simulation import DEFAULT_CHECKPOINT, probe_encoder
from training.pretrain_foundation import embed


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT)
    parser.add_argument("--device", default="cpu", help="torch device for the embeddings (cpu, cuda)")
    parser.add_argument("--out", type=Path, default=RUNS / "foundation_label_audit.csv")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--show", type=int, default=10)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    arrays, _, sid = load_ptbxl_arrays(args.data)
    pool = arrays.where("train")
    pool = pool.subset(np.flatnonzero(pool.label >= 0))
    model = probe_encoder(args.checkpoint).to(resolve_device(args.device))
    y = pool.label.astype(int)
    p = out_of_fold_probability(embed(model, pool.signal, pool.lead_mask).astype(np.float64), y, args.folds, seed=0)
    score = audit_priority(p, y)
    order = rank_for_audit(p, y)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.writer(fh)
        header = ["rank", "record_id", "full_codes", "given_label", "prob_abnormal_out_of_fold", "disagreement"]
        writer.writerow(header)
        for rank, i in enumerate(order, start=1):
            row = [rank, pool.record_ids[i], bool(pool.full_codes[i]), int(y[i]), f"{p[i]:.4f}", f"{score[i]:.4f}"]
            writer.writerow(row)
    for rank, i in enumerate(order[: args.show], start=1):
        codes = ",".join(pool.codes[i]) if pool.full_codes[i] else "normal list"
        print(f"{rank:3d} {pool.record_ids[i]} given {int(y[i])} P(abnormal) {p[i]:.3f} codes {codes}")
    summary = {
        "n_audited": len(y),
        "n_disagreement_over_0.8": int((score > 0.8).sum()),
        "out": str(args.out),
        "data_split_id": sid,
    }
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    main()
