"""Train the ECG anomaly detector on normal ECGs: ``python -m training.train_detector``.

Reads top to bottom: config -> data -> model -> optimizer -> loop -> validation/checkpoint.
Defaults live in :class:`TrainConfig`; ``--config training/configs/detector.toml`` overrides them
and ``--key=value`` flags override both (``--model.d_model=64`` for model fields). Unknown keys
and values of the wrong type are errors.

Data: normals (NORM-only) of PTB-XL folds 1–8 from every PTB-XL-layout folder under ``--data_dir``
plus ptb-xl-extra normals with ``source_split == "train"``. Validation (model selection and the
operating point) = fold 9, normals and abnormals. Fold 10 is never read here.
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

from ecg_models.anomaly_detector import AnomalyDetector, DetectorConfig, build_detector
from training import config
from training.config import git_sha
from training.data.splits import excluded_report, load_index, split_id, split_records
from training.detector_attributes import cached_attribute_table, normalised_targets
from training.detector_data import (
    DetectorArrays,
    arrays_from_index,
    attribute_deviation,
    choose_threshold,
    detection_metrics,
    score_arrays,
    to_tensors,
)

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class TrainConfig:
    """Training defaults (the shipped model's run)."""

    data_dir: str = str(REPO_ROOT / ".." / "shared" / "data")  # folder holding PTB-XL-layout folders
    out_dir: str = str(REPO_ROOT / "training" / "runs" / "detector")  # checkpoints and logs
    attribute_cache: str = str(REPO_ROOT / "training" / "runs" / "detector_attributes.csv")
    export_path: str = ""  # if set, copy the best weights (no optimizer) here, e.g. ecg_models/weights/detector.pt
    seed: int = 0
    num_threads: int = 1  # torch intra-op threads (the CPU box is shared)
    device: str = "cpu"  # "cuda" to train on a GPU (e.g. full PTB-XL)
    epochs: int = 40
    time_budget_s: float = 0.0  # stop after the epoch that crosses this wall time (0 = no limit)
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_steps: int = 100
    lead_dropout: float = 0.15  # probability per ECG of zeroing 1–11 random leads (bad-input robustness)
    # Probability per ECG of a site-shift augmentation (residual per-lead gain, noise, drift, a blurred
    # low-rate source; see _shift). 0 = none (shipped v1).
    shift_augment: float = 0.0
    # "superclass": NORM as the only diagnostic superclass (v1); "clinical": also sinus rhythm and no
    # rhythm, ectopy or abnormal form statement (training.data.ptbxl.clinical_label), for the training
    # normals and the validation labels alike.
    normal_definition: str = "superclass"
    attribute_weight: float = 0.1
    val_every: int = 2  # epochs between validation passes
    max_train_records: int = 0  # cap for smoke tests (0 = all)
    max_val_records: int = 0  # cap for smoke tests (0 = all)
    model: DetectorConfig = field(default_factory=DetectorConfig)


def parse_config(argv: list[str]) -> TrainConfig:
    """Build the config from defaults, an optional ``--config FILE.toml`` and ``--key=value`` flags."""
    return config.parse_config(TrainConfig(), argv)


def _augment(batch: list[torch.Tensor], rate: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Zero random leads in some ECGs so the model copes with missing leads at serving time."""
    record, beats, beat_valid, lead_valid, sample_valid, r_track = (t.clone() for t in batch)
    for i in range(record.shape[0]):
        if torch.rand(1, generator=generator).item() < rate:
            n_drop = int(torch.randint(1, 12, (1,), generator=generator))
            drop = torch.randperm(12, generator=generator)[:n_drop]
            record[i, drop] = 0.0
            beats[i, :, drop] = 0.0
            lead_valid[i, drop] = False
    return [record, beats, beat_valid, lead_valid, sample_valid, r_track]


def _shift(x: torch.Tensor, gain: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Return ``x`` (leads, n), preprocessed, as another site might record it.

    The pipeline already removes what differs most between sites (per-lead offset and units by robust
    scaling, wander below 1 Hz and mains above 25 Hz by the band-pass; tests/inference/test_preprocessing.py),
    so only what survives it is simulated: a residual per-lead gain (0.8-1.25), broadband noise (muscle,
    SD up to 0.03 against ~0.15 for the signal), a 1-2 Hz drift the high-pass lets through, and the
    blur of a 100-125 Hz source (a 2-3 sample moving average at 250 Hz). Electrode misplacement is not
    simulated: reversal is a technical finding the service must flag, not a normal variant to learn.
    """
    leads, n = x.shape
    out = x * gain[:, None]
    t = torch.arange(n, dtype=x.dtype) / 250.0
    freq = 1.0 + torch.rand(leads, 1, generator=generator)
    phase = 2 * torch.pi * torch.rand(leads, 1, generator=generator)
    out = out + 0.05 * torch.rand(1, generator=generator) * torch.sin(2 * torch.pi * freq * t + phase)
    out = out + 0.03 * torch.rand(1, generator=generator) * torch.randn(leads, n, generator=generator)
    if torch.rand(1, generator=generator).item() < 0.3:
        width = int(torch.randint(2, 4, (1,), generator=generator))
        out = torch.nn.functional.avg_pool1d(out[None], width, stride=1, padding=0, count_include_pad=False)[0]
        out = torch.nn.functional.pad(out, (0, n - out.shape[-1]), mode="replicate")
    return out


def _shift_augment(batch: list[torch.Tensor], rate: float, generator: torch.Generator) -> list[torch.Tensor]:
    """Apply ``_shift`` to some ECGs of a batch (the same per-lead gain in the record and its beats)."""
    record, beats, *rest = batch
    for i in range(record.shape[0]):
        if rate and torch.rand(1, generator=generator).item() < rate:
            gain = torch.exp(torch.empty(record.shape[1]).uniform_(-0.22, 0.22, generator=generator))
            record[i] = _shift(record[i], gain, generator)
            for k in range(beats.shape[1]):
                beats[i, k] = _shift(beats[i, k], gain, generator)
    return [record, beats, *rest]


BEAT_WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


def _choose_beat_weight(model: AnomalyDetector, val: DetectorArrays, labelled: np.ndarray) -> float:
    """Set and return the record/beat score mix with the best validation AUROC (scores are linear in it)."""
    if not model.cfg.use_beat_view:
        return model.cfg.beat_score_weight
    model.cfg.beat_score_weight = 0.0
    record_only, _, _ = score_arrays(model, val)
    model.cfg.beat_score_weight = 1.0
    beat_part = score_arrays(model, val)[0] - record_only
    aurocs = [
        detection_metrics((record_only + w * beat_part)[labelled], val.labels[labelled], np.inf)["auroc"]
        for w in BEAT_WEIGHT_GRID
    ]
    model.cfg.beat_score_weight = BEAT_WEIGHT_GRID[int(np.argmax(aurocs))]
    return model.cfg.beat_score_weight


def _choose_score_weighting(model: AnomalyDetector, val: DetectorArrays, labelled: np.ndarray) -> bool:
    """Set and return whether the score weights errors by the predicted uncertainty (best validation AUROC)."""
    aurocs = {}
    for weighted in (False, True):
        model.cfg.score_uncertainty = weighted
        _choose_beat_weight(model, val, labelled)
        aurocs[weighted] = detection_metrics(score_arrays(model, val)[0][labelled], val.labels[labelled], np.inf)[
            "auroc"
        ]
    model.cfg.score_uncertainty = aurocs[True] > aurocs[False]
    return model.cfg.score_uncertainty


def validate(model: AnomalyDetector, val: DetectorArrays, val_attr: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
    """Score validation ECGs; choose the beat weight, attribute use and threshold there.

    Returns AUROC (restoration only and with attribute deviation), the choices and score
    statistics. Only fold 9 is used, so the operating point never sees the test fold.
    """
    labelled = val.labels >= 0
    labels = val.labels[labelled]
    _choose_score_weighting(model, val, labelled)
    beat_weight = _choose_beat_weight(model, val, labelled)
    scores, attrs, _ = score_arrays(model, val)
    dev = attribute_deviation(attrs, *val_attr)
    normal = val.labels == 0
    stats = {
        "rest_mean": float(scores[normal].mean()),
        "rest_std": float(scores[normal].std() + 1e-8),
        "dev_mean": float(dev[normal].mean()),
        "dev_std": float(dev[normal].std() + 1e-8),
    }
    combined = (scores - stats["rest_mean"]) / stats["rest_std"] + (dev - stats["dev_mean"]) / stats["dev_std"]
    auroc_rest = detection_metrics(scores[labelled], labels, np.inf)["auroc"]
    auroc_comb = (
        detection_metrics(combined[labelled], labels, np.inf)["auroc"] if model.cfg.use_attribute_head else float("nan")
    )
    use_attr = bool(model.cfg.use_attribute_head and auroc_comb > auroc_rest)
    z_rest = (scores - stats["rest_mean"]) / stats["rest_std"]
    chosen = combined if use_attr else z_rest
    return {
        "auroc_restoration": auroc_rest,
        "auroc_combined": auroc_comb,
        "use_attribute_deviation": use_attr,
        "beat_score_weight": beat_weight,
        "score_uncertainty": model.cfg.score_uncertainty,
        "auroc": auroc_comb if use_attr else auroc_rest,
        "threshold": choose_threshold(chosen[labelled], labels),
        # For data without measured intervals (e.g. Challenge directories): z(restoration) only.
        "threshold_restoration": choose_threshold(z_rest[labelled], labels),
        "score_stats": stats,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Train, validate and checkpoint; return the best validation summary."""
    cfg = parse_config(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    out_dir = Path(cfg.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    # Data: the split rule is shared with the foundation model (training/data/splits.py).
    index = load_index(Path(cfg.data_dir))
    if cfg.normal_definition == "clinical":
        index = index.assign(label=index["clinical_label"])
    elif cfg.normal_definition != "superclass":
        raise ValueError(f"normal_definition must be 'superclass' or 'clinical', got {cfg.normal_definition!r}")
    splits = split_records(index)
    train_df = splits["train"][splits["train"]["label"] == "normal"]
    val_df = splits["val"]
    if cfg.max_train_records:
        train_df = train_df.sample(min(cfg.max_train_records, len(train_df)), random_state=cfg.seed)
    if cfg.max_val_records:
        val_df = val_df.groupby("label", group_keys=False).head(cfg.max_val_records // 2)
    logger.info("train normals %d, val %d, excluded %s", len(train_df), len(val_df), excluded_report(splits))
    t0 = time.time()
    train = arrays_from_index(train_df)
    val = arrays_from_index(val_df)
    train_attr = normalised_targets(cached_attribute_table(train_df, Path(cfg.attribute_cache)))
    val_attr = normalised_targets(cached_attribute_table(val_df, Path(cfg.attribute_cache)))
    logger.info("preprocessed in %.1f s", time.time() - t0)

    # Model and optimizer.
    model = build_detector(cfg.model).to(cfg.device)
    n_params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(train) // cfg.batch_size)
    total_steps = cfg.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min(1.0, (s + 1) / cfg.warmup_steps) * 0.5 * (1 + np.cos(np.pi * min(s, total_steps) / total_steps)),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    targets = torch.from_numpy(train_attr[0])
    valid = torch.from_numpy(train_attr[1])

    # Loop.
    best: dict[str, Any] = {"auroc": -1.0}
    history = []
    step = 0
    start = time.time()
    for epoch in range(cfg.epochs):
        model.train()
        epoch_start = time.time()
        order = torch.randperm(len(train), generator=generator).numpy()
        losses = []
        for b in range(steps_per_epoch):
            idx = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            record, beats, beat_valid, lead_valid, sample_valid, r_track = (
                t.to(cfg.device)
                for t in _augment(
                    _shift_augment(to_tensors(train.arrays, idx), cfg.shift_augment, generator),
                    cfg.lead_dropout,
                    generator,
                )
            )
            loss, parts = model.loss(
                record,
                beats,
                beat_valid,
                lead_valid,
                sample_valid,
                r_track,
                targets[idx].to(cfg.device),
                valid[idx].to(cfg.device),
                generator,
                cfg.attribute_weight,
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            step += 1
            losses.append(loss.item())
        record = {"epoch": epoch, "loss": float(np.mean(losses)), "epoch_seconds": time.time() - epoch_start, **parts}
        last = epoch == cfg.epochs - 1 or (cfg.time_budget_s and time.time() - start > cfg.time_budget_s)
        if (epoch + 1) % cfg.val_every == 0 or last:
            summary = validate(model, val, val_attr)
            record.update({k: summary[k] for k in ("auroc_restoration", "auroc_combined", "beat_score_weight")})
            if summary["auroc"] > best["auroc"]:
                best = {**summary, "epoch": epoch, "step": step}
                _save(out_dir / "best.pt", model, optimizer, cfg, best, splits, n_params)
        history.append(record)
        logger.info(json.dumps(record))
        if last:
            break

    best["train_seconds"] = time.time() - start
    best["epochs_run"] = len(history)
    best["seconds_per_epoch"] = float(np.mean([h["epoch_seconds"] for h in history]))
    best["n_params"] = n_params
    (out_dir / "history.json").write_text(json.dumps({"history": history, "best": best}, indent=1, default=str))
    if cfg.export_path:
        ckpt = torch.load(out_dir / "best.pt", weights_only=False)
        ckpt.pop("optimizer", None)
        ckpt["summary"] = best
        torch.save(ckpt, cfg.export_path)
    print(json.dumps({k: v for k, v in best.items() if k != "score_stats"}, default=str))
    return best


def _save(
    path: Path,
    model: AnomalyDetector,
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    best: dict[str, Any],
    splits: dict[str, Any],
    n_params: int,
) -> None:
    """Write a self-describing checkpoint (G13): configs, step, metric, optimizer, split id, SHA."""
    torch.save(
        {
            "model": model.state_dict(),
            "model_config": asdict(model.cfg),  # includes the beat_score_weight chosen on validation
            "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
            "step": best["step"],
            "epoch": best["epoch"],
            "best_metric": {"val_auroc": best["auroc"]},
            "operating_point": {
                "threshold": best["threshold"],
                "threshold_restoration": best["threshold_restoration"],
                "use_attribute_deviation": best["use_attribute_deviation"],
                "score_stats": best["score_stats"],
                "chosen_on": "validation (PTB-XL fold 9)",
            },
            "optimizer": optimizer.state_dict(),
            "data_split_id": split_id(splits),
            "n_params": n_params,
            "git_sha": git_sha(),
        },
        path,
    )


if __name__ == "__main__":
    main()
