"""Supervised 1-D ResNet baseline, trained from scratch: ``python -m training.foundation_baselines``.

Same labelled records, same split and same preprocessing (``foundation_inputs``) as the
foundation model's fine-tuning; heads: normal/abnormal and the 5 superclasses. Model selection
on fold 9; the test fold is not read. Writes ``ecg_models/weights/resnet1d_baseline.pt``.
The network is a small xresnet1d-style stack (the published PTB-XL anchor is xresnet1d101).
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
import torch.nn.functional as F
from torch import nn

from training.config import git_sha, parse_config, resolve_device
from training.foundation_data import (
    DEFAULT_DATA,
    FoundationArrays,
    load_ptbxl_arrays,
    macro_auroc,
    safe_auroc,
)

logger = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class ResNetConfig:
    """Architecture of the baseline."""

    n_leads: int = 12  # input leads
    widths: tuple[int, ...] = (32, 64, 128, 128)  # one residual stage per width, stride 2 each after the first
    kernel: int = 7  # conv kernel size
    n_superclasses: int = 5  # superclass outputs


class ResNetBlock(nn.Module):
    """Two convs with batch norm and a projected shortcut."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.c1 = nn.Conv1d(c_in, c_out, kernel, stride, kernel // 2, bias=False)
        self.b1 = nn.BatchNorm1d(c_out)
        self.c2 = nn.Conv1d(c_out, c_out, kernel, 1, kernel // 2, bias=False)
        self.b2 = nn.BatchNorm1d(c_out)
        self.short = (
            nn.Identity()
            if c_in == c_out and stride == 1
            else nn.Sequential(nn.Conv1d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm1d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b2(self.c2(F.relu(self.b1(self.c1(x))))) + self.short(x))


class ResNet1d(nn.Module):
    """(B, 12, N) signal, (B, 12) lead mask -> (abnormal logit (B,), superclass logits (B, 5))."""

    def __init__(self, cfg: ResNetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv1d(cfg.n_leads, cfg.widths[0], 15, 2, 7, bias=False), nn.BatchNorm1d(cfg.widths[0])
        )
        blocks = []
        c_in = cfg.widths[0]
        for i, w in enumerate(cfg.widths):
            blocks.append(ResNetBlock(c_in, w, cfg.kernel, 1 if i == 0 else 2))
            c_in = w
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(2 * c_in, 1 + cfg.n_superclasses)

    def forward(self, signal: torch.Tensor, lead_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.blocks(F.relu(self.stem(signal * lead_mask.unsqueeze(-1).to(signal.dtype))))
        out = self.head(torch.cat([h.mean(-1), h.amax(-1)], dim=1))
        return out[:, 0], out[:, 1:]


def resnet_from_checkpoint(path: Path) -> ResNet1d:
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ckpt["model_config"]
    model = ResNet1d(ResNetConfig(**{**cfg, "widths": tuple(cfg["widths"])}))
    model.load_state_dict(ckpt["model"], strict=True)
    return model.eval()


@torch.no_grad()
def predict_resnet(model: ResNet1d, data: FoundationArrays, batch: int = 128) -> tuple[np.ndarray, np.ndarray]:
    model.eval()
    a, s = [], []
    dev = next(model.parameters()).device
    for i in range(0, len(data), batch):
        x, m = torch.from_numpy(data.signal[i : i + batch]), torch.from_numpy(data.lead_mask[i : i + batch])
        out = model(x.to(dev), m.to(dev))
        a.append(out[0].float().cpu().numpy())
        s.append(out[1].float().cpu().numpy())
    return np.concatenate(a), np.concatenate(s)


@dataclass
class BaselineConfig:
    """ResNet baseline training defaults."""

    data_dir: str = str(DEFAULT_DATA)
    out_path: str = str(REPO_ROOT / "ecg_models" / "weights" / "resnet1d_baseline.pt")
    seed: int = 0
    device: str = "cpu"  # torch device ("cuda" when available); the checkpoint is written on the CPU
    num_threads: int = 1
    epochs: int = 30
    time_budget_s: float = 420.0
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.01
    max_records: int = 0  # cap for smoke tests (0 = all)
    model: ResNetConfig = field(default_factory=ResNetConfig)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg: BaselineConfig = parse_config(BaselineConfig(), sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.num_threads)
    arrays, _, sid = load_ptbxl_arrays(Path(cfg.data_dir))
    train, val = arrays.where("train"), arrays.where("val")
    if cfg.max_records:
        train = train.subset(np.arange(min(cfg.max_records, len(train))))
    device = resolve_device(cfg.device)
    model = ResNet1d(cfg.model).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)
    best: dict[str, Any] = {"val_score": -1.0}
    start = time.time()
    steps = max(1, len(train) // cfg.batch_size)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(train), generator=gen).numpy()
        for b in range(steps):
            idx = np.sort(order[b * cfg.batch_size : (b + 1) * cfg.batch_size])
            a, s = model(
                torch.from_numpy(train.signal[idx]).to(device), torch.from_numpy(train.lead_mask[idx]).to(device)
            )
            loss = F.binary_cross_entropy_with_logits(a, torch.from_numpy(train.label[idx]).float().to(device))
            loss = loss + F.binary_cross_entropy_with_logits(s, torch.from_numpy(train.superclass[idx]).to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        pa, ps = predict_resnet(model, val)
        auc = safe_auroc(val.label.astype(float), pa)
        mac = macro_auroc(val.superclass, ps)[0]
        score = (auc + mac) / 2
        logger.info(json.dumps({"epoch": epoch, "loss": loss.item(), "val_auroc": auc, "val_macro_superclass": mac}))
        if score > best["val_score"]:
            best = {"val_score": score, "val_auroc": auc, "val_macro_superclass": mac, "epoch": epoch}
            torch.save(
                {
                    "model": {k: v.cpu() for k, v in model.state_dict().items()},
                    "model_kind": "resnet1d_baseline",
                    "model_config": asdict(cfg.model),
                    "train_config": {k: v for k, v in asdict(cfg).items() if k != "model"},
                    "step": (epoch + 1) * steps,
                    "best_metric": best,
                    "data_split_id": sid,
                    "git_sha": git_sha(),
                },
                cfg.out_path,
            )
        if cfg.time_budget_s and time.time() - start > cfg.time_budget_s:
            break
    best["train_seconds"] = time.time() - start
    best["n_params"] = sum(p.numel() for p in model.parameters())
    print(json.dumps(best))
    return best


if __name__ == "__main__":
    main()
