"""Fine-tune the foundation model: ``python -m training.finetune_foundation [--mode=probe|full]``.

Reads top to bottom: config -> data -> tokenizer -> model -> optimizer -> loop -> validation/checkpoint.
Defaults live in :class:`FinetuneConfig`; ``--config training/configs/foundation_finetune.toml``
overrides them and ``--key=value`` flags override both.

- ``mode=probe``: the CPC-pretrained encoder is frozen; the heads and the report decoder train.
- ``mode=full``: everything trains, multi-task: normal/abnormal + superclasses + statements +
  report text (teacher-forced cross-entropy) + any-lead: each batch is also run with random lead
  subsets (the five named subsets and random ones), with the heads' losses and a
  feature-distribution alignment loss towards the same model's detached 12-lead embedding.

Data: labelled train records (PTB-XL folds 1–8 and ptb-xl-extra ``source_split == "train"``);
statements and text only where full SCP codes are known. Model selection on fold 9 (mean of
normal/abnormal AUROC and macro superclass AUROC). The test fold is never read here.
The tokenizer is trained on the statement phrases of ``scp_statements.csv`` and the train texts.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ecg_models.foundation import (
    PAD_ID,
    FoundationConfig,
    FoundationModel,
    alignment_loss,
    build_foundation,
    random_lead_masks,
)
from training.config import git_sha, parse_config, resolve_device
from training.detector_data import choose_threshold
from training.foundation_data import (
    DEFAULT_DATA,
    LEAD_SUBSETS,
    RUNS,
    FoundationArrays,
    load_ptbxl_arrays,
    macro_auroc,
    safe_auroc,
    subset_mask,
)
from training.foundation_text import encode, load_tokenizer, train_tokenizer

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"


@dataclass
class FinetuneConfig:
    """Fine-tuning defaults (the shipped model's run)."""

    data_dir: str = str(DEFAULT_DATA)  # folder holding PTB-XL-layout folders
    mode: str = "full"  # "probe" (frozen encoder) or "full"
    pretrained: str = str(RUNS / "foundation_pretrain" / "best.pt")  # CPC checkpoint ("" = from scratch)
    out_dir: str = str(RUNS / "foundation_finetune")  # checkpoints and history (mode appended)
    tokenizer_path: str = str(WEIGHTS / "foundation_tokenizer.json")
    train_new_tokenizer: bool = True  # False: reuse the tokenizer at tokenizer_path
    export_path: str = ""  # if set, write the shipped checkpoint (no optimizer) here
    probe_checkpoint: str = ""  # probe run to embed in the export as the linear-probe baseline
    seed: int = 0
    device: str = "cpu"  # torch device ("cuda" when available); checkpoints are written on the CPU
    num_threads: int = 1
    epochs: int = 30
    time_budget_s: float = 480.0
    batch_size: int = 32
    lr: float = 1e-3  # heads and decoder
    encoder_lr: float = 3e-4  # encoder (full mode)
    weight_decay: float = 0.01
    statement_weight: float = 1.0
    text_weight: float = 0.5
    align_weight: float = 1.0
    subset_loss_weight: float = 0.5  # weight of the heads' losses on the lead-subset pass
    random_subset_prob: float = 0.3  # per ECG: a random subset instead of one of the named ones
    val_every: int = 1
    max_records: int = 0  # cap for smoke tests (0 = all)
    model: FoundationConfig = field(default_factory=FoundationConfig)  # decoder/head fields apply


def _subset_masks(mask: torch.Tensor, generator: torch.Generator, random_prob: float) -> torch.Tensor:
    """Per ECG: one of LEAD_SUBSETS (or a random subset) intersected with the real mask."""
    names = list(LEAD_SUBSETS)
    rand = random_lead_masks(mask.shape[0], 12, 1.0, generator)
    out = mask.clone()
    for i in range(mask.shape[0]):
        if torch.rand(1, generator=generator).item() < random_prob:
            sub = rand[i]
        else:
            sub = torch.zeros(12, dtype=torch.bool)
            sub[list(LEAD_SUBSETS[names[int(torch.randint(len(names), (1,), generator=generator))]])] = True
        cand = mask[i] & sub
        out[i] = cand if cand.any() else mask[i]
    return out


def head_losses(
    model: FoundationModel, out: tuple[torch.Tensor, ...], data: FoundationArrays, idx: np.ndarray, w_st: float
) -> torch.Tensor:
    abnormal, superclass, statement, _ = out
    dev = abnormal.device
    label = torch.from_numpy(data.label[idx]).float().to(dev)
    loss = F.binary_cross_entropy_with_logits(abnormal, label)
    loss = loss + F.binary_cross_entropy_with_logits(superclass, torch.from_numpy(data.superclass[idx]).to(dev))
    full = torch.from_numpy(data.full_codes[idx]).to(dev)
    if full.any() and model.cfg.n_statements:
        loss = loss + w_st * F.binary_cross_entropy_with_logits(
            statement[full], torch.from_numpy(data.statements[idx]).to(dev)[full]
        )
    return loss


@torch.no_grad()
def predict(model: FoundationModel, signal: np.ndarray, mask: np.ndarray, batch: int = 128) -> list[np.ndarray]:
    """Return [abnormal logit (N,), superclass (N, 5), statement (N, S), embedding (N, 2 * d_model)] in eval mode."""
    model.eval()
    dev = next(model.parameters()).device
    parts: list[list[np.ndarray]] = [[], [], [], []]
    for i in range(0, len(signal), batch):
        out = model(torch.from_numpy(signal[i : i + batch]).to(dev), torch.from_numpy(mask[i : i + batch]).to(dev))
        for p, o in zip(parts, out, strict=True):
            p.append(o.float().cpu().numpy())
    return [np.concatenate(p) for p in parts]


def validate(model: FoundationModel, val: FoundationArrays, tokens: np.ndarray) -> dict[str, Any]:
    a, s, _, _ = predict(model, val.signal, val.lead_mask)
    out: dict[str, Any] = {
        "val_auroc": safe_auroc(val.label.astype(float), a),
        "val_macro_superclass": macro_auroc(val.superclass, s)[0],
    }
    for name in LEAD_SUBSETS:
        out[f"val_auroc_{name}"] = safe_auroc(
            val.label.astype(float), predict(model, val.signal, subset_mask(val.lead_mask, name))[0]
        )
    full = np.flatnonzero(val.full_codes)
    with torch.no_grad():
        dev = next(model.parameters()).device
        tok = torch.from_numpy(tokens[full]).to(dev)
        logits = model.report_logits(
            tok[:, :-1], torch.from_numpy(val.signal[full]).to(dev), torch.from_numpy(val.lead_mask[full]).to(dev)
        )
        out["val_text_loss"] = float(F.cross_entropy(logits.transpose(1, 2), tok[:, 1:], ignore_index=PAD_ID))
    out["val_score"] = (out["val_auroc"] + out["val_macro_superclass"]) / 2
    out["threshold"] = float(choose_threshold(1 / (1 + np.exp(-a)), val.label))
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Fine-tune, validate, checkpoint (and export); return the best validation summary."""
    cfg: FinetuneConfig = parse_config(FinetuneConfig(), sys.argv[1:] if argv is None else argv)
    if cfg.mode not in ("probe", "full"):
        raise ValueError(f"mode must be 'probe' or 'full', got {cfg.mode!r}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    out_dir = Path(f"{cfg.out_dir}_{cfg.mode}")
    out_dir.mkdir(parents=True, exist_ok=True)

    # Data.
    arrays, builder, sid = load_ptbxl_arrays(Path(cfg.data_dir))
    train, val = arrays.where("train"), arrays.where("val")
    if cfg.max_records:
        train = train.subset(np.random.default_rng(cfg.seed).permutation(len(train))[: cfg.max_records])
    logger.info("train %d (full codes %d), val %d, split %s", len(train), train.full_codes.sum(), len(val), sid)

    # Tokenizer (trained on the statement dictionary and train texts only).
    tok_path = Path(cfg.tokenizer_path)
    if cfg.train_new_tokenizer:
        corpus = [f"{p}." for p in builder.phrase.values()] + [t for t in train.texts if t]
        tok = train_tokenizer(corpus, vocab_size=cfg.model.vocab_size)
        tok_path.parent.mkdir(parents=True, exist_ok=True)
        tok.save(str(tok_path))
    else:
        tok = load_tokenizer(tok_path)
    max_len = cfg.model.max_len
    train_tokens = np.stack([encode(tok, t, max_len) for t in train.texts])
    val_tokens = np.stack([encode(tok, t, max_len) for t in val.texts])
    longest = max(len(tok.encode(t).ids) for t in arrays.texts if t)
    logger.info("vocab %d, longest train/val/test text %d tokens (max_len %d)", tok.get_vocab_size(), longest, max_len)

    # Model: encoder architecture from the pretraining checkpoint, decoder/heads from cfg.model.
    pre: dict[str, Any] = {}
    enc_cfg = cfg.model
    if cfg.pretrained:
        pre = torch.load(cfg.pretrained, map_location="cpu", weights_only=False)
        pc = pre["model_config"]
        enc_cfg = dataclasses.replace(
            cfg.model,
            **{
                k: (tuple(pc[k]) if isinstance(pc[k], list) else pc[k])
                for k in ("channels", "kernel", "d_model", "n_res_blocks", "cpc_offsets")
            },
        )
    model_cfg = dataclasses.replace(enc_cfg, vocab_size=tok.get_vocab_size(), statement_codes=arrays.statement_codes)
    device = resolve_device(cfg.device)
    model = build_foundation(model_cfg)
    if pre:
        encoder_state = {k: v for k, v in pre["model"].items() if k.startswith("encoder.")}
        missing, unexpected = model.load_state_dict(encoder_state, strict=False)
        assert not unexpected and not [k for k in missing if k.startswith("encoder.")], (missing, unexpected)
    model = model.to(device)
    encoder_params = list(model.encoder.parameters()) + list(model.pool_norm.parameters())
    other = list(model.heads.parameters()) + list(model.decoder.parameters())
    if cfg.mode == "probe":
        for p in encoder_params:
            p.requires_grad_(False)
        groups = [{"params": other, "lr": cfg.lr}]
    else:
        groups = [{"params": other, "lr": cfg.lr}, {"params": encoder_params, "lr": cfg.encoder_lr}]
    optimizer = torch.optim.AdamW(groups, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 30) * 0.5 * (1 + np.cos(np.pi * min(s, total) / total))
    )
    generator = torch.Generator().manual_seed(cfg.seed)

    # Loop.
    best: dict[str, Any] = {"val_score": -1.0}
    history = []
    step = 0
    start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        if cfg.mode == "probe":
            model.encoder.eval()
        order = torch.randperm(len(train), generator=generator).numpy()
        parts: dict[str, list[float]] = {"heads": [], "text": [], "align": []}
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            x = torch.from_numpy(train.signal[idx]).to(device)
            mask_cpu = torch.from_numpy(train.lead_mask[idx])  # lead subsets are drawn on the CPU generator
            mask = mask_cpu.to(device)
            latents = model.encode(x, mask)
            emb = model.pool(latents)
            loss_heads = head_losses(model, model.heads(emb) + (emb,), train, idx, cfg.statement_weight)
            full = np.flatnonzero(train.full_codes[idx])
            tok_b = torch.from_numpy(train_tokens[idx[full]]).to(device)
            logits = model.decoder(tok_b[:, :-1], model.memory(latents[torch.from_numpy(full).to(device)]))
            loss_text = F.cross_entropy(logits.transpose(1, 2), tok_b[:, 1:], ignore_index=PAD_ID)
            loss = loss_heads + cfg.text_weight * loss_text
            loss_align = torch.zeros(())
            if cfg.mode == "full" and cfg.align_weight > 0:
                sub_mask = _subset_masks(mask_cpu, generator, cfg.random_subset_prob).to(device)
                sub_emb = model.pool(model.encode(x, sub_mask))
                loss_align = alignment_loss(sub_emb, emb)
                sub_heads = head_losses(model, model.heads(sub_emb) + (sub_emb,), train, idx, cfg.statement_weight)
                loss = loss + cfg.align_weight * loss_align + cfg.subset_loss_weight * sub_heads
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            parts["heads"].append(loss_heads.item())
            parts["text"].append(loss_text.item())
            parts["align"].append(loss_align.item())
        rec: dict[str, Any] = {
            "epoch": epoch,
            **{k: float(np.mean(v)) for k, v in parts.items()},
            "elapsed_s": time.time() - start,
        }
        last = epoch == cfg.epochs - 1 or bool(cfg.time_budget_s and time.time() - start > cfg.time_budget_s)
        if (epoch + 1) % cfg.val_every == 0 or last:
            rec.update(validate(model, val, val_tokens))
            if rec["val_score"] > best["val_score"]:
                best = {k: v for k, v in rec.items() if k.startswith("val_") or k == "threshold"}
                best.update(epoch=epoch, step=step)
                _save(out_dir / "best.pt", model, optimizer, cfg, best, sid, pre, tok_path, train)
        history.append(rec)
        logger.info(json.dumps(rec))
        if last:
            break
    best["train_seconds"] = time.time() - start
    best["n_params"] = sum(p.numel() for p in model.parameters())
    (out_dir / "history.json").write_text(json.dumps({"history": history, "best": best}, indent=1))
    if cfg.export_path:
        export_checkpoint(out_dir / "best.pt", Path(cfg.export_path), best, cfg.probe_checkpoint)
    print(json.dumps(best))
    return best


def export_checkpoint(
    run_checkpoint: Path, export_path: Path, summary: dict[str, Any], probe_checkpoint: str = ""
) -> None:
    """Write the shipped checkpoint: the run's best without the optimizer, plus the probe baseline.

    The probe entry holds the frozen CPC encoder and the probe's heads (no decoder): evaluation
    reports it as the linear-probe baseline and the active-learning simulation embeds with it.
    """
    ckpt = torch.load(run_checkpoint, map_location="cpu", weights_only=False)
    ckpt.pop("optimizer", None)
    ckpt["summary"] = summary
    if probe_checkpoint:
        probe = torch.load(probe_checkpoint, map_location="cpu", weights_only=False)
        ckpt["probe"] = {
            "model": {k: v for k, v in probe["model"].items() if k.startswith(("encoder.", "pool_norm.", "heads."))},
            "best_metric": probe["best_metric"],
            "note": "CPC-pretrained encoder, frozen; heads trained (linear probe). Decoder omitted.",
        }
    export_path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, export_path)


def _save(
    path: Path,
    model: FoundationModel,
    optimizer: torch.optim.Optimizer,
    cfg: FinetuneConfig,
    best: dict[str, Any],
    sid: str,
    pre: dict[str, Any],
    tok_path: Path,
    train: FoundationArrays,
) -> None:
    """Self-describing checkpoint (G13) plus what serving needs (operating point, references)."""
    ref_idx = np.flatnonzero(train.full_codes)
    reference = predict(model, train.signal[ref_idx], train.lead_mask[ref_idx])[3]
    model.train()
    if cfg.mode == "probe":
        model.encoder.eval()
    torch.save(
        {
            "model": {k: v.cpu() for k, v in model.state_dict().items()},
            "model_kind": "foundation",
            "model_config": asdict(model.cfg),
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
            "step": best["step"],
            "epoch": best["epoch"],
            "best_metric": {
                "val_score": best["val_score"],
                "val_auroc": best["val_auroc"],
                "val_macro_superclass": best["val_macro_superclass"],
            },
            "operating_point": {
                "threshold_prob_abnormal": best["threshold"],
                "chosen_on": "validation (PTB-XL fold 9)",
            },
            "optimizer": optimizer.state_dict(),
            "data_split_id": sid,
            "git_sha": git_sha(),
            "tokenizer": tok_path.name,
            "pretraining": {
                k: pre.get(k) for k in ("best_metric", "step", "git_sha", "n_pretrain_records", "train_config")
            }
            if pre
            else None,
            # Embeddings of the labelled train ECGs (float16): the novelty term of active learning.
            "reference_embeddings": torch.from_numpy(reference).half(),
        },
        path,
    )


if __name__ == "__main__":
    main()
