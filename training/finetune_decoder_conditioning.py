"""Condition the foundation model's report decoder on the measured findings.

``python -m training.finetune_decoder_conditioning [--device cpu] [--epochs 6] [--write]``

Starts from the shipped ``ecg_models/weights/foundation.pt`` and turns on
``condition_on_measured``: one more decoder memory token embeds the measured-findings vector
(``inference.clinical.conditioning.MEASURED_FINDINGS``, K = 21) of each ECG. The encoder and the
heads are frozen (eval mode, no gradient), so the probabilities, the operating point, the reference
embeddings and the served classifier do not change; the decoder, the findings-token embedding and
the new measured-token embedding train with teacher-forced text cross-entropy on the training
split's target texts (records with full SCP codes, as in ``training.finetune_foundation``).

Measured vectors come from each training ECG's raw signal (``training.measured_cache``; ptb-xl-extra
records are z-scored, so their amplitude entries are 0). The epoch is selected on fold 9 only: the
label check (macro F1 over superclasses of the greedy text parsed back to codes), ties broken by
the fold-9 text loss. The test fold is never read here. With ``--write`` the result replaces
``ecg_models/weights/foundation.pt`` only if its fold-9 label check is not worse than the shipped
model's; both numbers are printed and kept in the run's ``history.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ecg_models.foundation import PAD_ID, FoundationModel, build_foundation, from_checkpoint
from inference.clinical.conditioning import AMPLITUDE_SNOMED, MEASURED_SNOMED, N_MEASURED
from inference.clinical.decoder_check import DecoderSentence, Evidence, decoder_text_check
from training.foundation_data import DEFAULT_DATA, RUNS, load_ptbxl_arrays
from training.foundation_text import ReportBuilder, decode, encode, label_check, load_tokenizer
from training.measured_cache import MeasuredRecord, ptbxl_measured, vectors

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = REPO_ROOT / "ecg_models" / "weights"


def conditioned_model(shipped: FoundationModel) -> FoundationModel:
    """Return a copy of ``shipped`` with the measured token added (new embedding, rest copied)."""
    cfg = dataclasses.replace(shipped.cfg, condition_on_measured=True, n_measured=N_MEASURED)
    model = build_foundation(cfg)
    missing, unexpected = model.load_state_dict(shipped.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("measured_embed.") for k in missing), (missing, unexpected)
    return model


def trainable(model: FoundationModel) -> list[torch.nn.Parameter]:
    """Freeze everything but the decoder and the two conditioning embeddings; return those."""
    for p in model.parameters():
        p.requires_grad_(False)
    params = [
        *model.decoder.parameters(),
        *model.findings_embed.parameters(),
        *model.measured_embed.parameters(),
    ]
    for p in params:
        p.requires_grad_(True)
    return params


@torch.no_grad()
def frozen_latents(model: FoundationModel, signal: np.ndarray, mask: np.ndarray, device: str) -> torch.Tensor:
    """Encoder latents (N, T, D) in eval mode (the encoder is frozen, so once is enough)."""
    model.eval()
    out = [
        model.encode(torch.from_numpy(signal[i : i + 64]).to(device), torch.from_numpy(mask[i : i + 64]).to(device))
        for i in range(0, len(signal), 64)
    ]
    return torch.cat(out)


def memory(model: FoundationModel, latents: torch.Tensor, measured: torch.Tensor | None) -> torch.Tensor:
    """Decoder memory with the encoder and heads in eval mode (no head dropout), decoder as it is."""
    heads_mode = model.heads.training
    model.heads.eval()
    try:
        return model.memory(latents, measured if model.condition_on_measured else None)
    finally:
        model.heads.train(heads_mode)


@torch.no_grad()
def text_loss(model: FoundationModel, latents: torch.Tensor, measured: torch.Tensor, tokens: torch.Tensor) -> float:
    model.eval()
    logits = model.decoder(tokens[:, :-1], memory(model, latents, measured))
    return float(F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=PAD_ID))


@torch.no_grad()
def generate(model: FoundationModel, latents: torch.Tensor, measured: torch.Tensor, tok: Any) -> list[str]:
    """Greedy texts from precomputed latents (same loop as the served generator)."""
    from ecg_models.foundation import FoundationGreedyGenerator

    model.eval()
    gen = FoundationGreedyGenerator(model)
    texts: list[str] = []
    for i in range(0, len(latents), 64):
        mem = memory(model, latents[i : i + 64], measured[i : i + 64])
        ids = gen.greedy(mem)[:, 1:]
        texts.extend(decode(tok, row.tolist()) for row in ids.cpu())
    return texts


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=WEIGHTS / "foundation.pt")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--out-dir", type=Path, default=RUNS / "foundation_decoder_conditioning")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--time-budget-s", type=float, default=480.0)
    parser.add_argument(
        "--consistent-targets",
        choices=("none", "strict", "all"),
        default="strict",
        help="drop from each training target the sentences its measurements contradict: "
        "'strict' only where a measurement refutes the statement itself (AF vs sinus, QRS width, PR, QTc, axis, "
        "ectopic counts), 'all' also 'normal ecg' on any abnormal measured finding and sinus without measured P waves",
    )
    parser.add_argument(
        "--signal-dropout",
        type=float,
        default=0.0,
        help="per training step, the probability of a measured-only step (memory = the measured token alone)",
    )
    parser.add_argument(
        "--measured-lr-scale", type=float, default=1.0, help="learning-rate factor of the new embedding"
    )
    parser.add_argument("--write", action="store_true", help="replace --checkpoint if fold 9 is not worse")
    parser.add_argument(
        "--control",
        action="store_true",
        help="same fine-tune without the measured token (what the extra decoder training alone buys); never writes",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    device = args.device
    args.out_dir.mkdir(parents=True, exist_ok=True)

    # Data: full-code train records (texts) and fold 9; their measured vectors from the raw signals.
    arrays, builder, sid = load_ptbxl_arrays(args.data_dir)
    train, val = arrays.where("train"), arrays.where("val")
    train = train.subset(np.flatnonzero(train.full_codes))
    val = val.subset(np.flatnonzero(val.full_codes))
    started = time.time()
    measured = ptbxl_measured(args.data_dir, [*train.record_ids, *val.record_ids])
    measure_s = time.time() - started
    m_train = torch.from_numpy(vectors(measured, train.record_ids)).to(device)
    m_val = torch.from_numpy(vectors(measured, val.record_ids)).to(device)
    logger.info(
        "train %d, val %d texts; measured in %.0f s; train prevalence %s",
        len(train),
        len(val),
        measure_s,
        dict(zip(MEASURED_SNOMED, m_train.mean(0).cpu().numpy().round(3).tolist(), strict=True)),
    )

    ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    tok = load_tokenizer(args.checkpoint.parent / ckpt["tokenizer"])
    max_len = int(ckpt["model_config"]["max_len"])
    train_texts = list(train.texts)
    changed = 0
    if args.consistent_targets != "none":
        train_texts = [
            consistent_text(t, measured[str(r)], strict=args.consistent_targets == "strict")
            for t, r in zip(train.texts, train.record_ids, strict=True)
        ]
        changed = sum(a != b for a, b in zip(train_texts, train.texts, strict=True))
        keep = np.flatnonzero([bool(t) for t in train_texts])
        logger.info(
            "consistent targets: %d of %d texts changed, %d left empty (dropped)",
            changed,
            len(train),
            len(train) - len(keep),
        )
        train = train.subset(keep)
        train_texts = [train_texts[i] for i in keep]
        m_train = m_train[torch.from_numpy(keep).to(device)]
    t_train = torch.from_numpy(np.stack([encode(tok, t, max_len) for t in train_texts])).to(device)
    t_val = torch.from_numpy(np.stack([encode(tok, t, max_len) for t in val.texts])).to(device)

    shipped = from_checkpoint(args.checkpoint).to(device)
    if shipped.cfg.condition_on_measured:
        raise SystemExit(f"{args.checkpoint} is already conditioned on measured findings")
    # Keep the starting point (the "before" of training.evaluate_decoder_conditioning).
    shutil.copy(args.checkpoint, args.out_dir / "start.pt")
    shutil.copy(args.checkpoint.parent / ckpt["tokenizer"], args.out_dir / ckpt["tokenizer"])
    lat_train = frozen_latents(shipped, train.signal, train.lead_mask, device)
    lat_val = frozen_latents(shipped, val.signal, val.lead_mask, device)
    val_codes = list(val.codes)
    baseline = {
        "val_text_loss": text_loss(shipped, lat_val, m_val, t_val),
        **_label(builder, generate(shipped, lat_val, m_val, tok), val_codes),
    }
    logger.info("shipped model on fold 9: %s", json.dumps(baseline))

    if args.control:
        model = build_foundation(shipped.cfg)
        model.load_state_dict(shipped.state_dict())
        model = model.to(device)
        args.write = False
    else:
        model = conditioned_model(shipped).to(device)
    params = trainable(model)
    embed_params = {id(p) for p in model.measured_embed.parameters()}
    optimizer = torch.optim.AdamW(
        [
            {"params": [p for p in params if id(p) not in embed_params], "lr": args.lr},
            {"params": [p for p in params if id(p) in embed_params], "lr": args.lr * args.measured_lr_scale},
        ],
        weight_decay=args.weight_decay,
    )
    steps = max(1, len(train) // args.batch_size)
    total = args.epochs * steps
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + np.cos(np.pi * min(s, total) / total))
    )
    generator = torch.Generator().manual_seed(args.seed)
    history: list[dict[str, Any]] = []
    best: dict[str, Any] = {"val_label_macro_f1": -1.0, "val_text_loss": float("inf")}
    best_state: dict[str, torch.Tensor] = {}
    started = time.time()
    for epoch in range(args.epochs):
        model.eval()
        model.decoder.train()
        order = torch.randperm(len(train), generator=generator).numpy()
        losses = []
        for b in range(steps):
            idx = torch.from_numpy(np.sort(order[b * args.batch_size : (b + 1) * args.batch_size])).to(device)
            tokens = t_train[idx]
            mem = memory(model, lat_train[idx], m_train[idx])
            if model.condition_on_measured and float(torch.rand(1, generator=generator)) < args.signal_dropout:
                # A measured-only step: the decoder sees the measured token alone, so it must learn
                # to write from it. Without such steps it ignores one token among 127 (diluted by
                # the 125 latents and the findings token, which already predict the text in training).
                mem = mem[:, -1:]
            logits = model.decoder(tokens[:, :-1], mem)
            loss = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], ignore_index=PAD_ID)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            losses.append(loss.item())
        rec: dict[str, Any] = {
            "epoch": epoch,
            "train_text_loss": float(np.mean(losses)),
            "val_text_loss": text_loss(model, lat_val, m_val, t_val),
            **_label(builder, generate(model, lat_val, m_val, tok), val_codes),
            "elapsed_s": round(time.time() - started, 1),
        }
        history.append(rec)
        logger.info(json.dumps(rec))
        key = (rec["val_label_macro_f1"], -rec["val_text_loss"])
        if key > (best["val_label_macro_f1"], -best["val_text_loss"]):
            best = {k: v for k, v in rec.items() if k.startswith("val_")} | {"epoch": epoch}
            best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        if args.time_budget_s and time.time() - started > args.time_budget_s:
            break
    train_s = time.time() - started
    torch.save({"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}}, args.out_dir / "last_state.pt")
    not_worse = best["val_label_macro_f1"] >= baseline["val_label_macro_f1"]
    summary = {
        "shipped_fold9": baseline,
        "conditioned_fold9": best,
        "not_worse_on_fold9": bool(not_worse),
        "train_seconds": round(train_s, 1),
        "measure_seconds": round(measure_s, 1),
        "n_train_texts": len(train),
        "n_val_texts": len(val),
        "device": device,
        "control_without_measured": bool(args.control),
        "consistent_targets": args.consistent_targets,
        "train_targets_changed": changed,
        "signal_dropout": args.signal_dropout,
        "measured_lr_scale": args.measured_lr_scale,
        "data_split_id": sid,
    }
    out = dict(ckpt)
    out["model"] = best_state
    out["model_config"] = dataclasses.asdict(model.cfg)
    out["decoder_conditioning"] = summary | {
        "measured_findings": list(MEASURED_SNOMED),
        "started_from": f"{args.checkpoint.name} ({ckpt.get('git_sha', '?')})",
        "frozen": "encoder, pool_norm, heads (probabilities, threshold, reference embeddings unchanged)",
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    torch.save(out, args.out_dir / "best.pt")
    (args.out_dir / "history.json").write_text(json.dumps({"history": history, "summary": summary}, indent=1))
    if args.write and not_worse:
        torch.save(out, args.checkpoint)
        logger.info("wrote %s", args.checkpoint)
    elif args.write:
        logger.info("fold-9 label check worse than the shipped model's: %s left as it is", args.checkpoint)
    print(json.dumps(summary))
    return summary


def consistent_text(text: str, rec: MeasuredRecord, *, strict: bool = True) -> str:
    """The target text without the sentences the record's measurements contradict.

    Evidence as in ``inference.clinical.report``: the measurements and measured findings, with
    ``abnormal`` = a measured finding is abnormal (amplitude findings only where the signal is in mV).
    ``strict``: keep "normal ecg" (a verdict, not a measurement: 188 of 389 training texts would
    lose it, mostly for measured 1AVB, unclear rhythm, sinus arrhythmia, ST elevation, bradycardia
    or PVCs the cardiologist did not code) and sinus statements refuted only by absent P waves
    (P waves are measured absent in 119 of 389 training ECGs). The cardiologist's other statements
    (morphology, infarction, ...) are kept as written.
    """
    abnormal = any(f.abnormal and (rec.amplitudes_valid or f.snomed not in AMPLITUDE_SNOMED) for f in rec.findings)
    evidence = Evidence(measurements=rec.measurements, measured=rec.findings, abnormal=abnormal)

    def refuted(s: DecoderSentence) -> bool:
        if not s.removed_because:
            return False
        return not strict or (s.code != "NORM" and not s.removed_because.startswith("no P waves"))

    kept = [s.text for s in decoder_text_check(text, evidence) if not refuted(s)]
    return "".join(f"{s}. " for s in kept).strip()


def _label(builder: ReportBuilder, texts: list[str], codes: list[Any]) -> dict[str, float]:
    check = label_check(builder, texts, codes)
    return {
        "val_label_macro_f1": round(float(check["macro_f1"]), 4),
        "val_statement_micro_f1": round(float(check["statement_micro_f1"]), 4),
    }


if __name__ == "__main__":
    main()
