"""Baselines for the anomaly detector: a plain convolutional autoencoder on the record view.

The feature-based one-class baseline (intervals + median-beat morphology + isolation forest) is
not a torch model and lives in ``training/detector_baselines.py``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class ConvAutoencoderConfig:
    """Hyper-parameters of the convolutional autoencoder baseline."""

    n_leads: int = 12  # input leads
    record_samples: int = 2400  # record view length (9.6 s at 250 Hz); must be divisible by 2**len(channels)
    channels: tuple[int, ...] = (32, 48, 64, 96)  # encoder widths; each stage halves time
    kernel_size: int = 7  # temporal kernel of every conv
    map_sigma: float = 6.0  # Gaussian smoothing of the anomaly map, in samples

    def __post_init__(self) -> None:
        """Reject lengths the encoder cannot halve evenly."""
        self.channels = tuple(self.channels)
        if self.record_samples % (2 ** len(self.channels)):
            raise ValueError(f"record_samples={self.record_samples} not divisible by 2**{len(self.channels)}")


class ConvAutoencoder(nn.Module):
    """Encode (B, leads, L) to a 16x shorter code and decode it back; score = masked MSE."""

    map_kernel: torch.Tensor

    def __init__(self, cfg: ConvAutoencoderConfig) -> None:
        super().__init__()
        self.cfg = cfg
        pad = cfg.kernel_size // 2
        enc: list[nn.Module] = []
        c_in = cfg.n_leads
        for c in cfg.channels:
            enc += [nn.Conv1d(c_in, c, cfg.kernel_size, stride=2, padding=pad), nn.BatchNorm1d(c), nn.GELU()]
            c_in = c
        dec: list[nn.Module] = []
        for c in reversed((cfg.n_leads, *cfg.channels[:-1])):
            last = c == cfg.n_leads and len(dec) == 3 * (len(cfg.channels) - 1)
            dec += [nn.ConvTranspose1d(c_in, c, 4, stride=2, padding=1)]
            if not last:
                dec += [nn.BatchNorm1d(c), nn.GELU()]
            c_in = c
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        radius = max(1, int(3 * cfg.map_sigma))
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (grid / cfg.map_sigma) ** 2)
        self.register_buffer("map_kernel", (kernel / kernel.sum()).repeat(cfg.n_leads, 1, 1), persistent=False)

    def reconstruct(self, record: torch.Tensor) -> torch.Tensor:
        """(B, leads, L) -> (B, leads, L)."""
        return self.decoder(self.encoder(record))

    def forward(
        self,
        record: torch.Tensor,
        beats: torch.Tensor,
        beat_valid: torch.Tensor,
        lead_valid: torch.Tensor,
        sample_valid: torch.Tensor,
        r_track: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (score (B,), map (B, leads, L), empty attributes (B, 0)); same signature as the detector."""
        err = (self.reconstruct(record) - record) ** 2
        pad = self.map_kernel.shape[-1] // 2
        amap = F.conv1d(F.pad(err, (pad, pad), mode="replicate"), self.map_kernel, groups=self.cfg.n_leads)
        weight = lead_valid[:, :, None].float() * sample_valid[:, None, :].float()
        amap = amap * weight
        score = amap.sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1.0)
        return score, amap, record.new_zeros(record.shape[0], 0)

    def loss(self, record: torch.Tensor, lead_valid: torch.Tensor, sample_valid: torch.Tensor) -> torch.Tensor:
        """Return the masked reconstruction MSE."""
        weight = lead_valid[:, :, None].float() * sample_valid[:, None, :].float()
        return (((self.reconstruct(record) - record) ** 2) * weight).sum() / weight.sum().clamp(min=1.0)


def from_checkpoint(path: str | Path) -> ConvAutoencoder:
    """Rebuild the autoencoder from a checkpoint holding ``model_config`` and ``model``."""
    ckpt = torch.load(Path(path), map_location="cpu", weights_only=False)
    model = ConvAutoencoder(ConvAutoencoderConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"], strict=True)
    return model.eval()


def config_dict(cfg: ConvAutoencoderConfig) -> dict[str, Any]:
    """Return the config as a plain dict."""
    return asdict(cfg)
