"""Pretrain the foundation encoder with CPC: ``python -m training.pretrain_foundation``.

Reads top to bottom: config -> data -> model -> optimizer -> loop -> validation/checkpoint.
Defaults live in :class:`PretrainConfig`; ``--config training/configs/foundation_pretrain.toml``
overrides them and ``--key=value`` flags override both (``--model.d_model=64``).

Data: every record under ``--data_dir`` except the test split (PTB-XL fold 10) and the
ptb-xl-extra val/test records (possible patient overlap): labelled or not, preprocessed by
``foundation_inputs``. Loss: contrastive predictive coding (InfoNCE, k in ``cpc_offsets`` future latents) with lead
dropout; ``--model.cpc_negatives`` chooses the negatives: ``shifted`` (the shipped run: other ECGs
at the same step plus the same ECG circularly shifted) or ``sampled`` (other ECGs plus random
batch latents, none of the anchor's own record within ``cpc_exclude_steps`` of the positive). Model selection:
by default the last epoch (``select_on="last"``): the probe below, a logistic regression on
pooled embeddings fitted on train folds and scored on fold 9 (72 ECGs), is logged but too noisy
to select on (in the shipped run it peaked at epoch 2, before CPC had converged).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from ecg_models.foundation import FoundationConfig, FoundationModel, build_foundation, random_lead_masks
from training.config import git_sha, parse_config, resolve_device
from training.foundation_data import DEFAULT_DATA, RUNS, FoundationArrays, load_ptbxl_arrays, safe_auroc

logger = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Pretraining defaults (the shipped model's run)."""

    data_dir: str = str(DEFAULT_DATA)  # folder holding PTB-XL-layout folders
    out_dir: str = str(RUNS / "foundation_pretrain")  # checkpoints and history
    seed: int = 0
    device: str = "cpu"  # torch device ("cuda" when available); data stays on the CPU between batches
    num_threads: int = 1  # torch intra-op threads (the CPU box is shared)
    epochs: int = 40
    time_budget_s: float = 720.0  # stop after the epoch that crosses this wall time (0 = no limit)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.01
    lead_dropout: float = 0.5  # probability per ECG of keeping only a random subset of leads
    noise_std: float = 0.01  # Gaussian noise added to the scaled signal
    val_every: int = 2  # epochs between probe validations
    select_on: str = "last"  # "last": keep the final epoch (CPC keeps improving); "probe": best fold-9 probe AUROC
    max_records: int = 0  # cap for smoke tests (0 = all)
    model: FoundationConfig = field(default_factory=FoundationConfig)


@torch.no_grad()
def embed(model: FoundationModel, signal: np.ndarray, mask: np.ndarray, batch: int = 128) -> np.ndarray:
    """Pooled embeddings (N, 2D) in eval mode."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(signal), batch):
        x, m = torch.from_numpy(signal[i : i + batch]).to(device), torch.from_numpy(mask[i : i + batch]).to(device)
        out.append(model(x, m)[3].float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 2 * model.cfg.d_model), np.float32)


def probe_auroc(model: FoundationModel, train: FoundationArrays, val: FoundationArrays) -> float:
    """Normal/abnormal AUROC on ``val`` of a logistic regression on frozen embeddings."""
    if len(np.unique(train.label)) < 2 or len(np.unique(val.label)) < 2:
        return float("nan")
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(embed(model, train.signal, train.lead_mask), train.label)
    return safe_auroc(val.label.astype(float), clf.predict_proba(embed(model, val.signal, val.lead_mask))[:, 1])


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Pretrain, validate, checkpoint; return the best summary."""
    cfg: PretrainConfig = parse_config(PretrainConfig(), sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Data: everything but the test split.
    arrays, _, sid = load_ptbxl_arrays(Path(cfg.data_dir))
    pool = arrays.subset(np.flatnonzero(np.isin(arrays.split, ["train", "val"])))
    if cfg.max_records:
        pool = pool.subset(np.random.default_rng(cfg.seed).permutation(len(pool))[: cfg.max_records])
    probe_train = arrays.where("train")
    probe_train = probe_train.subset(np.flatnonzero(probe_train.full_codes))  # subset folds 1-8 (+ full_table)
    probe_val = arrays.where("val")
    logger.info(
        "pretraining records %d (split id %s); probe train %d val %d", len(pool), sid, len(probe_train), len(probe_val)
    )

    # Model and optimizer.
    device = resolve_device(cfg.device)
    model = build_foundation(cfg.model).to(device)
    params = list(model.encoder.parameters()) + list(model.pool_norm.parameters()) + list(model.cpc.parameters())
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(pool) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 50) * 0.5 * (1 + np.cos(np.pi * min(s, total) / total))
    )
    generator = torch.Generator().manual_seed(cfg.seed)

    # Loop.
    best: dict[str, Any] = {"val_probe_auroc": -1.0}
    history = []
    step = 0
    start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(pool), generator=generator).numpy()
        losses = []
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            x = torch.from_numpy(pool.signal[idx])
            mask = torch.from_numpy(pool.lead_mask[idx]) & random_lead_masks(len(idx), 12, cfg.lead_dropout, generator)
            x = x + cfg.noise_std * torch.randn(x.shape, generator=generator)
            loss = model.cpc(model.encode(x.to(device), mask.to(device)), generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
        rec: dict[str, Any] = {"epoch": epoch, "cpc_loss": float(np.mean(losses)), "elapsed_s": time.time() - start}
        last = epoch == cfg.epochs - 1 or bool(cfg.time_budget_s and time.time() - start > cfg.time_budget_s)
        if (epoch + 1) % cfg.val_every == 0 or last:
            rec["val_probe_auroc"] = probe_auroc(model, probe_train, probe_val)
            better = not rec["val_probe_auroc"] <= best["val_probe_auroc"]  # NaN-safe: NaN saves too
            if better or cfg.select_on == "last":
                best = {
                    "val_probe_auroc": rec["val_probe_auroc"],
                    "epoch": epoch,
                    "step": step,
                    "cpc_loss": rec["cpc_loss"],
                }
                torch.save(
                    {
                        "model": {
                            k: v
                            for k, v in model.state_dict().items()
                            if k.startswith(("encoder.", "pool_norm.", "cpc."))
                        },
                        "model_config": asdict(cfg.model),
                        "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
                        "step": step,
                        "epoch": epoch,
                        "best_metric": {"val_probe_auroc": rec["val_probe_auroc"]},
                        "optimizer": optimizer.state_dict(),
                        "data_split_id": sid,
                        "n_pretrain_records": len(pool),
                        "git_sha": git_sha(),
                    },
                    out_dir / "best.pt",
                )
        history.append(rec)
        logger.info(json.dumps(rec))
        if last:
            break
    best["train_seconds"] = time.time() - start
    best["first_cpc_loss"] = history[0]["cpc_loss"]
    best["n_records"] = len(pool)
    (out_dir / "history.json").write_text(json.dumps({"history": history, "best": best}, indent=1))
    print(json.dumps(best))
    return best


if __name__ == "__main__":
    main()
