"""ECG anomaly detector: multi-scale masked cross-restoration trained on normal ECGs only.

Implements, at a CPU-sized scale, the published detector (docs/architecture.md §4; Jiang et al.,
"Multi-scale Cross-restoration Framework for Electrocardiogram Anomaly Detection", MICCAI 2023,
and its extended version with an attribute head):

- record view (9.6 s) and beat view (0.96 s windows around R peaks), each cut into patches, 30%
  of the patches masked (paper §2.1);
- one cross-attention block in each direction fusing record and beat tokens (§2.2);
- a trend branch: the smoothed first derivative of the visible signal, embedded and added to the
  record tokens to guide restoration (§2.3);
- uncertainty-weighted restoration losses (§2.4, heteroscedastic Gaussian NLL);
- an attribute head (age, sex, HR, PR, QRS, QT, QTc) on the pooled record tokens (extended
  version);
- scoring with deterministic masks over the record and all beats (§2.5). Unlike the published
  code, which runs ~30 sequential forward passes per ECG, :meth:`AnomalyDetector.forward` folds
  every mask and every beat of every ECG in the batch into ONE batched pass, and the three masks
  are complementary so every patch is restored exactly once.

Input arrays come from ``inference.preprocessing.detector_inputs`` (250 Hz; the published model
runs at 500 Hz). The model holds no I/O besides :func:`from_checkpoint`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class DetectorConfig:
    """Hyper-parameters of the detector (defaults: the shipped CPU-sized model)."""

    n_leads: int = 12  # input leads, LEADS_12 order
    record_samples: int = 2400  # record view length (9.6 s at 250 Hz)
    beat_samples: int = 240  # beat view length (0.96 s at 250 Hz)
    max_beats: int = 8  # beat slots per ECG (invalid slots are masked out)
    beat_pre_samples: int = 80  # R-peak offset inside a beat window (matches inference.preprocessing)
    patch_size: int = 24  # samples per patch token (96 ms); must divide both view lengths
    input_scale: float = 6.0  # multiplies both views: preprocessing gives ~0.15 SD, ~1 SD trains far faster
    d_model: int = 128  # token width
    n_heads: int = 4  # attention heads; must divide d_model
    record_layers: int = 3  # self-attention blocks in the record encoder
    beat_layers: int = 1  # self-attention blocks in the beat encoder
    decoder_layers: int = 1  # self-attention blocks in each restoration decoder
    mlp_ratio: int = 2  # MLP hidden width = mlp_ratio * d_model
    dropout: float = 0.1  # dropout in attention outputs and MLPs (training only)
    mask_ratio: float = 0.3  # fraction of patches masked during training (paper: 30%)
    n_score_masks: int = 3  # complementary deterministic masks used for scoring
    mask_seed: int = 20231008  # seed of the deterministic scoring masks
    trend_smooth: int = 9  # moving-average width (samples) of the smoothed derivative
    use_trend: bool = True  # ablation switch: trend branch
    use_beat_view: bool = True  # ablation switch: beat view + cross-attention
    use_attribute_head: bool = True  # ablation switch: attribute head
    n_attributes: int = 7  # age, sex, HR, PR, QRS, QT, QTc
    beat_score_weight: float = 1.0  # weight of the beat restoration error in the score
    nll_beta: float = 1.0  # beta-NLL (Seitzer et al. 2022): variance^beta weight, stops the mean collapsing
    map_sigma: float = 6.0  # Gaussian smoothing of the anomaly map, in samples (24 ms)
    # Joint masks (issue 12): a beat patch is hidden exactly when the record patch at its time is, so a
    # masked span can never be copied from the other view. False: independent masks (shipped v1).
    joint_masks: bool = False
    # Uncertainty-weighted score (paper §2.4): squared error divided by the predicted variance, so
    # patches the model finds hard in normal ECGs (noise, baseline) count less. False: plain error.
    score_uncertainty: bool = False

    def __post_init__(self) -> None:
        """Reject inconsistent settings with the offending values."""
        if self.record_samples % self.patch_size or self.beat_samples % self.patch_size:
            raise ValueError(
                f"patch_size={self.patch_size} must divide record_samples={self.record_samples} "
                f"and beat_samples={self.beat_samples}"
            )
        if self.d_model % self.n_heads:
            raise ValueError(f"n_heads={self.n_heads} must divide d_model={self.d_model}")
        if not 0.0 < self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if self.n_score_masks < 1 or self.n_score_masks > self.record_samples // self.patch_size:
            raise ValueError(f"n_score_masks={self.n_score_masks} out of range")


# --- masking and patching -------------------------------------------------------------------


def patchify(x: torch.Tensor, patch: int) -> torch.Tensor:
    """Cut signals into channel-mixing patch vectors.

    (batch, leads, samples) -> (batch, samples // patch, leads * patch)
    """
    b, c, n = x.shape
    x = x.reshape(b, c, n // patch, patch)  # (b, c, tokens, patch)
    return x.permute(0, 2, 1, 3).reshape(b, n // patch, c * patch)


def unpatchify(tokens: torch.Tensor, leads: int, patch: int) -> torch.Tensor:
    """Invert :func:`patchify`: (batch, tokens, leads * patch) -> (batch, leads, tokens * patch)."""
    b, t, _ = tokens.shape
    x = tokens.reshape(b, t, leads, patch).permute(0, 2, 1, 3)  # (b, leads, tokens, patch)
    return x.reshape(b, leads, t * patch)


def random_patch_mask(batch: int, tokens: int, ratio: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a bool (batch, tokens) mask with round(ratio * tokens) True (masked) per row."""
    n_mask = max(1, round(ratio * tokens))
    noise = torch.rand(batch, tokens, generator=generator)
    ranks = noise.argsort(dim=1).argsort(dim=1)
    return ranks < n_mask


def complementary_masks(tokens: int, n_masks: int, seed: int) -> torch.Tensor:
    """Return bool (n_masks, tokens): a fixed random partition, each token masked exactly once."""
    generator = torch.Generator().manual_seed(seed)
    perm = torch.randperm(tokens, generator=generator)
    owner = torch.empty(tokens, dtype=torch.long)
    owner[perm] = torch.arange(tokens) % n_masks
    return owner[None, :] == torch.arange(n_masks)[:, None]


def positions(like: torch.Tensor, n: int) -> torch.Tensor:
    """Return 0..n-1 (long) on ``like``'s device without naming a device.

    ``torch.arange(n, device=x.device)`` is traced with the export machine's device as a constant
    (a TorchScript file traced on CPU then fails on GPU); ``new_ones`` takes the device from its
    input at run time, in TorchScript and ONNX alike.
    """
    return like.new_ones(n, dtype=torch.long).cumsum(0) - 1


def smoothed_derivative(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Return the first difference smoothed by ``kernel`` (leads, 1, width), same shape (batch, leads, samples)."""
    diff = F.pad(x[..., 1:] - x[..., :-1], (1, 0))
    width = kernel.shape[-1]
    return F.conv1d(diff, kernel, padding=width // 2, groups=kernel.shape[0])[..., : x.shape[-1]]


# --- building blocks ------------------------------------------------------------------------


class DetectorAttention(nn.Module):
    """Multi-head attention with an optional key padding mask (True = ignore key)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.q = nn.Linear(cfg.d_model, cfg.d_model)
        self.kv = nn.Linear(cfg.d_model, 2 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, query: torch.Tensor, keys: torch.Tensor, key_ignore: torch.Tensor | None = None) -> torch.Tensor:
        """(b, tq, d), (b, tk, d), (b, tk) bool -> (b, tq, d)."""
        b, tq, d = query.shape
        tk = keys.shape[1]
        h = self.n_heads
        q = self.q(query).reshape(b, tq, h, d // h).transpose(1, 2)  # (b, h, tq, dh)
        k, v = self.kv(keys).reshape(b, tk, 2, h, d // h).permute(2, 0, 3, 1, 4)  # 2 x (b, h, tk, dh)
        bias = None
        if key_ignore is not None:
            # Same values as zeros().masked_fill(key_ignore, -1e4), without a traced device constant.
            bias = key_ignore[:, None, None, :].to(query.dtype) * -1e4
        attn = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d // h) + (0 if bias is None else bias), dim=-1)
        y = (attn @ v).transpose(1, 2).reshape(b, tq, d)  # (b, tq, d)
        return self.dropout(self.out(y))


class DetectorBlock(nn.Module):
    """Pre-norm transformer block: self-attention then MLP."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(cfg.d_model)
        self.attn = DetectorAttention(cfg)
        self.norm2 = nn.LayerNorm(cfg.d_model)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor, key_ignore: torch.Tensor | None = None) -> torch.Tensor:
        """(b, t, d) -> (b, t, d)."""
        h = self.norm1(x)
        x = x + self.attn(h, h, key_ignore)
        return x + self.mlp(self.norm2(x))


class DetectorCrossScaleAttention(nn.Module):
    """Fuse two scales: queries of one view attend to the tokens of the other (paper §2.2)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(cfg.d_model)
        self.norm_kv = nn.LayerNorm(cfg.d_model)
        self.attn = DetectorAttention(cfg)

    def forward(self, query: torch.Tensor, context: torch.Tensor, context_ignore: torch.Tensor | None) -> torch.Tensor:
        """(b, tq, d), (b, tk, d), (b, tk) bool -> (b, tq, d)."""
        return query + self.attn(self.norm_q(query), self.norm_kv(context), context_ignore)


def sinusoidal_positions(tokens: int, dim: int) -> torch.Tensor:
    """Return fixed sine/cosine position codes (tokens, dim), as in the Transformer and MAE."""
    pos = torch.arange(tokens, dtype=torch.float32)[:, None]
    freq = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(tokens, dim)
    table[:, 0::2] = torch.sin(pos * freq)
    table[:, 1::2] = torch.cos(pos * freq)
    return table


class DetectorPatchEmbedding(nn.Module):
    """Embed patches, swap masked ones for a learned mask token, add positions."""

    pos: torch.Tensor

    def __init__(self, cfg: DetectorConfig, tokens: int) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.n_leads * cfg.patch_size, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.mask_token = nn.Parameter(torch.zeros(cfg.d_model))
        # Fixed sinusoidal codes (as in MAE): with small learned codes alone, masked tokens were
        # indistinguishable at init and restoration collapsed to predicting zero.
        self.register_buffer("pos", sinusoidal_positions(tokens, cfg.d_model), persistent=False)

    def forward(self, patches: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, t, leads*patch), (b, t) bool -> (b, t, d)."""
        x = self.norm(self.proj(patches))
        x = torch.where(mask[..., None], self.mask_token.expand_as(x), x)
        return x + self.pos


class DetectorTrendModule(nn.Module):
    """Embed the smoothed first derivative of the visible record as restoration guidance (§2.3)."""

    kernel: torch.Tensor

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.patch = cfg.patch_size
        # A constant buffer (not built from input shapes) keeps the graph exportable to ONNX.
        kernel = torch.ones(cfg.n_leads, 1, cfg.trend_smooth) / cfg.trend_smooth
        self.register_buffer("kernel", kernel, persistent=False)
        self.proj = nn.Linear(cfg.n_leads * cfg.patch_size, cfg.d_model)
        self.gate = nn.Parameter(torch.zeros(cfg.d_model))

    def forward(self, visible: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(b, leads, samples) with masked spans zeroed, (b, t) bool -> (b, t, d) trend tokens."""
        # Scale up: derivatives of 250 Hz signals are ~5x smaller than the signal itself.
        trend = patchify(smoothed_derivative(visible, self.kernel) * 5.0, self.patch)
        emb = self.proj(trend) * torch.tanh(self.gate)
        return emb.masked_fill(mask[..., None], 0.0)


class DetectorRestorationHead(nn.Module):
    """Decode tokens into patch means and log-variances (the uncertainty of §2.4)."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(DetectorBlock(cfg) for _ in range(cfg.decoder_layers))
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, 2 * cfg.n_leads * cfg.patch_size)

    def forward(self, x: torch.Tensor, key_ignore: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(b, t, d) -> mean, logvar, each (b, t, leads*patch)."""
        for block in self.blocks:
            x = block(x, key_ignore)
        mean, logvar = self.out(self.norm(x)).chunk(2, dim=-1)
        return mean, logvar.clamp(-6.0, 6.0)


# --- backbone -------------------------------------------------------------------------------


class DetectorBackbone(nn.Module):
    """Encode masked record and beat views, fuse them, and restore both."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.record_tokens = cfg.record_samples // cfg.patch_size
        self.beat_tokens = cfg.beat_samples // cfg.patch_size
        self.record_embed = DetectorPatchEmbedding(cfg, self.record_tokens)
        # Beat timing stays visible under the mask: restoring a masked QRS then means drawing the
        # expected (beat-view) morphology at a known place, not guessing the rhythm.
        self.rpeak_embed = nn.Linear(cfg.patch_size, cfg.d_model)
        self.record_encoder = nn.ModuleList(DetectorBlock(cfg) for _ in range(cfg.record_layers))
        self.record_head = DetectorRestorationHead(cfg)
        self.trend = DetectorTrendModule(cfg) if cfg.use_trend else None
        if cfg.use_beat_view:
            self.beat_embed = DetectorPatchEmbedding(cfg, self.beat_tokens)
            self.beat_encoder = nn.ModuleList(DetectorBlock(cfg) for _ in range(cfg.beat_layers))
            # A always-visible null key keeps attention defined when an ECG has no detected beat.
            self.null_beat = nn.Parameter(torch.zeros(1, 1, cfg.d_model))
            self.record_from_beats = DetectorCrossScaleAttention(cfg)
            self.beats_from_record = DetectorCrossScaleAttention(cfg)
            self.beat_head = DetectorRestorationHead(cfg)

    def forward(
        self,
        record: torch.Tensor,
        record_mask: torch.Tensor,
        beats: torch.Tensor,
        beat_mask: torch.Tensor,
        beat_valid: torch.Tensor,
        r_track: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Restore masked patches of both views.

        Shapes: record (b, leads, L), record_mask (b, T) bool, beats (b, K, leads, Lb),
        beat_mask (b, Tb) bool (shared by the beats of one row) or (b, K, Tb) (one per beat: joint
        masks), beat_valid (b, K) bool,
        r_track (b, L) float (1 at R peaks).
        Returns record mean/logvar (b, T, leads*patch), beat mean/logvar (b, K, Tb, leads*patch)
        and pooled record features (b, d).
        """
        cfg = self.cfg
        b = record.shape[0]
        k = beats.shape[1]
        patches = patchify(record, cfg.patch_size)  # (b, T, leads*patch)
        x = self.record_embed(patches, record_mask) + self.rpeak_embed(patchify(r_track[:, None, :], cfg.patch_size))
        if self.trend is not None:
            visible = unpatchify(patches.masked_fill(record_mask[..., None], 0.0), cfg.n_leads, cfg.patch_size)
            x = x + self.trend(visible, record_mask)
        for block in self.record_encoder:
            x = block(x)
        pooled = x.mean(dim=1)  # (b, d)
        beat_mean = beat_logvar = record.new_zeros((b, k, self.beat_tokens, cfg.n_leads * cfg.patch_size))
        if cfg.use_beat_view:
            flat = beats.reshape(b * k, cfg.n_leads, cfg.beat_samples)  # (b*K, leads, Lb)
            bmask = (
                beat_mask.reshape(b * k, -1) if beat_mask.dim() == 3 else beat_mask.repeat_interleave(k, dim=0)
            )  # (b*K, Tb)
            y = self.beat_embed(patchify(flat, cfg.patch_size), bmask)
            for block in self.beat_encoder:
                y = block(y)
            y = y.reshape(b, k * self.beat_tokens, cfg.d_model)  # (b, K*Tb, d)
            y_ignore = (~beat_valid).repeat_interleave(self.beat_tokens, dim=1)  # (b, K*Tb)
            keys = torch.cat([self.null_beat.expand(b, 1, cfg.d_model), y], dim=1)
            keys_ignore = torch.cat([torch.zeros_like(y_ignore[:, :1]), y_ignore], dim=1)
            x_fused = self.record_from_beats(x, keys, keys_ignore)
            y = self.beats_from_record(y, x, None)
            x = x_fused
            beat_mean, beat_logvar = self.beat_head(y.reshape(b * k, self.beat_tokens, cfg.d_model))
            beat_mean = beat_mean.reshape(b, k, self.beat_tokens, -1)
            beat_logvar = beat_logvar.reshape(b, k, self.beat_tokens, -1)
        rec_mean, rec_logvar = self.record_head(x)
        return rec_mean, rec_logvar, beat_mean, beat_logvar, pooled


# --- heads and full model -------------------------------------------------------------------


class DetectorAttributeHead(nn.Module):
    """Predict normalised age, sex logit, HR, PR, QRS, QT and QTc from pooled record features."""

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.LayerNorm(cfg.d_model),
            nn.Linear(cfg.d_model, cfg.d_model),
            nn.GELU(),
            nn.Linear(cfg.d_model, cfg.n_attributes),
        )

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        """(b, d) -> (b, n_attributes)."""
        return self.net(pooled)


class AnomalyDetector(nn.Module):
    """Masked cross-restoration anomaly detector; ``forward`` scores ECGs in one batched pass."""

    score_masks: torch.Tensor
    beat_score_masks: torch.Tensor
    map_kernel: torch.Tensor

    def __init__(self, cfg: DetectorConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.backbone = DetectorBackbone(cfg)
        self.attribute_head = DetectorAttributeHead(cfg) if cfg.use_attribute_head else None
        t = cfg.record_samples // cfg.patch_size
        tb = cfg.beat_samples // cfg.patch_size
        self.register_buffer("score_masks", complementary_masks(t, cfg.n_score_masks, cfg.mask_seed), persistent=False)
        self.register_buffer(
            "beat_score_masks", complementary_masks(tb, min(cfg.n_score_masks, tb), cfg.mask_seed + 1), persistent=False
        )
        radius = max(1, int(3 * cfg.map_sigma))
        grid = torch.arange(-radius, radius + 1, dtype=torch.float32)
        kernel = torch.exp(-0.5 * (grid / cfg.map_sigma) ** 2)
        self.register_buffer("map_kernel", (kernel / kernel.sum()).repeat(cfg.n_leads, 1, 1), persistent=False)

    def _smooth(self, x: torch.Tensor) -> torch.Tensor:
        """Gaussian-smooth per-sample errors along time: (B, leads, L) -> (B, leads, L)."""
        pad = self.map_kernel.shape[-1] // 2
        return F.conv1d(F.pad(x, (pad, pad), mode="replicate"), self.map_kernel, groups=self.cfg.n_leads)

    def _beat_starts(
        self, r_track: torch.Tensor, beat_valid: torch.Tensor, k: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return each beat slot's first record sample (B, K) and whether it maps to a beat (B, K) float.

        Beat k is the k-th R peak (time order) whose window fits in the record, the rule of
        ``inference.preprocessing.extract_beats``.
        """
        cfg = self.cfg
        length = r_track.shape[1]
        pre, lb = cfg.beat_pre_samples, cfg.beat_samples
        idx = positions(r_track, length)
        usable = (r_track > 0.5) & (idx >= pre) & (idx <= length - lb + pre)  # (B, L)
        rank = torch.cumsum(usable.long(), dim=1)
        onehot = usable[:, None, :] & (rank[:, None, :] == (positions(r_track, k) + 1)[None, :, None])  # (B, K, L)
        start = (onehot.long() * idx).sum(-1) - pre  # (B, K)
        return start, (beat_valid & onehot.any(-1)).float()

    def beat_masks_from_record(self, record_mask: torch.Tensor, r_track: torch.Tensor, k: int) -> torch.Tensor:
        """Return per-beat masks (b, K, Tb): a beat patch is masked when the record patch at its centre is.

        record_mask (b, T) bool, r_track (b, L). Beat slots without a beat get their patches' record
        positions from a start of -pre (clamped), which is harmless: their errors are never counted.
        """
        cfg = self.cfg
        start, _ = self._beat_starts(r_track, r_track.new_ones((r_track.shape[0], k), dtype=torch.bool), k)
        tb = cfg.beat_samples // cfg.patch_size
        centres = start[:, :, None] + positions(r_track, tb) * cfg.patch_size + cfg.patch_size // 2
        patch = (centres // cfg.patch_size).clamp(0, record_mask.shape[1] - 1)  # (b, K, Tb)
        return torch.gather(record_mask, 1, patch.reshape(patch.shape[0], -1)).reshape(patch.shape)

    def _place_beats(self, beat_err: torch.Tensor, r_track: torch.Tensor, beat_valid: torch.Tensor) -> torch.Tensor:
        """Put per-sample beat errors back at their record positions, averaging overlaps.

        Shapes: beat_err (B, K, leads, Lb), r_track (B, L), beat_valid (B, K) -> (B, leads, L).
        """
        bsz, k, leads, lb = beat_err.shape
        length = r_track.shape[1]
        start, valid = self._beat_starts(r_track, beat_valid, k)
        index = (start[:, :, None] + positions(r_track, lb)).clamp(0, length - 1)  # (B, K, Lb)
        src = (beat_err * valid[:, :, None, None]).permute(0, 2, 1, 3).reshape(bsz, leads, k * lb)
        flat_index = index.reshape(bsz, 1, k * lb)
        total = beat_err.new_zeros((bsz, leads, length)).scatter_add(2, flat_index.expand(-1, leads, -1), src)
        cover = beat_err.new_zeros((bsz, 1, length)).scatter_add(
            2, flat_index, valid[:, :, None].expand(-1, -1, lb).reshape(bsz, 1, k * lb)
        )
        return total / cover.clamp(min=1.0)

    def _attributes(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.attribute_head is None:
            return pooled.new_zeros((pooled.shape[0], self.cfg.n_attributes))
        return self.attribute_head(pooled)

    def forward(
        self,
        record: torch.Tensor,
        beats: torch.Tensor,
        beat_valid: torch.Tensor,
        lead_valid: torch.Tensor,
        sample_valid: torch.Tensor,
        r_track: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Score a batch of ECGs with all deterministic masks and beats in one pass.

        Shapes: record (B, leads, L) float, beats (B, K, leads, Lb) float, beat_valid (B, K) bool,
        lead_valid (B, leads) bool, sample_valid (B, L) bool, r_track (B, L) float.
        Returns score (B,), anomaly_map (B, leads, L) (zero on invalid leads/samples) and
        attributes (B, n_attributes), normalised.
        """
        cfg = self.cfg
        record, beats = record * cfg.input_scale, beats * cfg.input_scale
        bsz = record.shape[0]
        m = self.score_masks.shape[0]
        rec = record.repeat_interleave(m, dim=0)  # (B*m, leads, L)
        rmask = self.score_masks.repeat(bsz, 1)  # (B*m, T)
        bts = beats.repeat_interleave(m, dim=0)  # (B*m, K, leads, Lb)
        bvalid = beat_valid.repeat_interleave(m, dim=0)  # (B*m, K)
        rtrack = r_track.repeat_interleave(m, dim=0)  # (B*m, L)
        if cfg.joint_masks:
            bmask = self.beat_masks_from_record(rmask, rtrack, beats.shape[1])  # (B*m, K, Tb)
        else:
            bmask = (
                self.beat_score_masks[positions(record, m) % self.beat_score_masks.shape[0]]
                .repeat(bsz, 1)[:, None, :]
                .expand(-1, beats.shape[1], -1)
            )  # (B*m, K, Tb), the same for every beat
        rec_mean, rec_logvar, beat_mean, beat_logvar, pooled = self.backbone(rec, rmask, bts, bmask, bvalid, rtrack)
        # Each patch is masked in exactly one of the m complementary masks, so summing the masked
        # errors over masks gives one restoration error per sample.
        err = (rec_mean - patchify(rec, cfg.patch_size)) ** 2 * rmask[..., None]  # (B*m, T, leads*patch)
        if cfg.score_uncertainty:
            err = err * torch.exp(-rec_logvar)
        err = unpatchify(err, cfg.n_leads, cfg.patch_size).reshape(bsz, m, cfg.n_leads, cfg.record_samples).sum(1)
        weight = lead_valid[:, :, None].float() * sample_valid[:, None, :].float()  # (B, leads, L)
        amap = self._smooth(err) * weight
        score = amap.sum(dim=(1, 2)) / weight.sum(dim=(1, 2)).clamp(min=1.0)
        if cfg.use_beat_view:
            k, tb, lp = bts.shape[1], cfg.beat_samples // cfg.patch_size, cfg.n_leads * cfg.patch_size
            btarget = patchify(bts.reshape(-1, cfg.n_leads, cfg.beat_samples), cfg.patch_size)  # (B*m*K, Tb, lp)
            berr = (beat_mean.reshape(btarget.shape) - btarget) ** 2
            if cfg.score_uncertainty:
                berr = berr * torch.exp(-beat_logvar.reshape(btarget.shape))
            berr = berr.reshape(bsz * m, k, tb, cfg.n_leads, cfg.patch_size)  # (B*m, K, Tb, leads, patch)
            per_patch = (berr * lead_valid.repeat_interleave(m, dim=0)[:, None, None, :, None]).sum(dim=(3, 4))
            per_beat = (per_patch * bmask).sum(-1) / bmask.sum(-1).clamp(min=1)  # (B*m, K)
            per_beat = per_beat / (lead_valid.float().sum(-1).repeat_interleave(m, dim=0)[:, None] * cfg.patch_size)
            bv = bvalid.float()
            beat_score = ((per_beat * bv).sum(-1) / bv.sum(-1).clamp(min=1.0)).reshape(bsz, m).mean(1)
            has_beats = beat_valid.any(dim=1).float()
            # No detected beat: the record view alone decides (the beat term is zero, not NaN).
            score = score + cfg.beat_score_weight * beat_score * has_beats
            # The beat masks are complementary too: summing over masks gives one error per beat sample,
            # which goes back to its place in the record so the map shows what the score weighs.
            masked = berr.reshape(bsz * m, k, tb, lp) * bmask[..., None]
            per_sample = unpatchify(
                masked.reshape(bsz, m, k, tb, lp).sum(1).reshape(bsz * k, tb, lp), cfg.n_leads, cfg.patch_size
            )
            placed = self._place_beats(per_sample.reshape(bsz, k, cfg.n_leads, cfg.beat_samples), r_track, beat_valid)
            amap = amap + cfg.beat_score_weight * self._smooth(placed) * weight
        attributes = self._attributes(pooled).reshape(bsz, m, -1).mean(1)
        return score, amap, attributes

    def loss(
        self,
        record: torch.Tensor,
        beats: torch.Tensor,
        beat_valid: torch.Tensor,
        lead_valid: torch.Tensor,
        sample_valid: torch.Tensor,
        r_track: torch.Tensor,
        attr_targets: torch.Tensor,
        attr_valid: torch.Tensor,
        generator: torch.Generator | None = None,
        attribute_weight: float = 0.1,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Return the training loss with random masks (uncertainty-weighted restoration + attributes).

        Shapes as in :meth:`forward`, plus attr_targets (B, n_attributes) normalised (column 1 is
        sex in {0, 1}) and attr_valid (B, n_attributes) bool. Returns (loss, parts for logging).
        """
        cfg = self.cfg
        record, beats = record * cfg.input_scale, beats * cfg.input_scale
        bsz = record.shape[0]
        t = cfg.record_samples // cfg.patch_size
        tb = cfg.beat_samples // cfg.patch_size
        rmask = random_patch_mask(bsz, t, cfg.mask_ratio, generator).to(record.device)
        if cfg.joint_masks:
            bmask = self.beat_masks_from_record(rmask, r_track, beats.shape[1])  # (B, K, Tb)
        else:
            bmask = random_patch_mask(bsz, tb, cfg.mask_ratio, generator).to(record.device)[:, None, :]
            bmask = bmask.expand(-1, beats.shape[1], -1)
        rec_mean, rec_logvar, beat_mean, beat_logvar, pooled = self.backbone(
            record, rmask, beats, bmask, beat_valid, r_track
        )
        # Heteroscedastic NLL: the model may declare a patch hard (large logvar) at a log cost,
        # so noisy but normal segments do not dominate training (paper §2.4). Plain NLL let the
        # record branch collapse to "predict zero, large variance"; the beta-NLL weight
        # (detached variance**beta) keeps a useful gradient on the mean.
        w = patchify(
            lead_valid[:, :, None].float() * sample_valid[:, None, :].float().expand(-1, cfg.n_leads, -1),
            cfg.patch_size,
        )
        w = w * rmask[..., None]
        nll = _beta_nll(patchify(record, cfg.patch_size), rec_mean, rec_logvar, cfg.nll_beta)
        rec_loss = (nll * w).sum() / w.sum().clamp(min=1.0)
        total = rec_loss
        parts = {"record": float(rec_loss.detach())}
        if cfg.use_beat_view:
            target = patchify(beats.reshape(-1, cfg.n_leads, cfg.beat_samples), cfg.patch_size).reshape(beat_mean.shape)
            bw = lead_valid[:, None, None, :, None].float().expand(-1, beats.shape[1], tb, -1, cfg.patch_size)
            bw = bw.reshape(beat_mean.shape) * bmask[..., None] * beat_valid[:, :, None, None]
            bnll = _beta_nll(target, beat_mean, beat_logvar, cfg.nll_beta)
            beat_loss = (bnll * bw).sum() / bw.sum().clamp(min=1.0)
            total = total + beat_loss
            parts["beat"] = float(beat_loss.detach())
        if self.attribute_head is not None:
            pred = self.attribute_head(pooled)
            av = attr_valid.float()
            reg = F.smooth_l1_loss(pred, attr_targets, reduction="none")
            sex = F.binary_cross_entropy_with_logits(pred[:, 1], attr_targets[:, 1].clamp(0, 1), reduction="none")
            per = torch.cat([reg[:, :1], sex[:, None], reg[:, 2:]], dim=1)
            attr_loss = (per * av).sum() / av.sum().clamp(min=1.0)
            total = total + attribute_weight * attr_loss
            parts["attributes"] = float(attr_loss.detach())
        return total, parts


def _beta_nll(target: torch.Tensor, mean: torch.Tensor, logvar: torch.Tensor, beta: float) -> torch.Tensor:
    """Return the element-wise beta-weighted Gaussian NLL (any shape; beta=0 is the plain NLL)."""
    nll = (target - mean) ** 2 * torch.exp(-logvar) + logvar
    return nll * torch.exp(beta * logvar).detach() if beta else nll


def build_detector(cfg: DetectorConfig | dict[str, Any]) -> AnomalyDetector:
    """Return a freshly initialised detector from a config or its dict form."""
    return AnomalyDetector(cfg if isinstance(cfg, DetectorConfig) else DetectorConfig(**cfg))


def from_checkpoint(path: str | Path, map_location: str = "cpu") -> AnomalyDetector:
    """Rebuild the detector from a checkpoint that embeds its ``model_config`` (eval mode).

    Raises KeyError if the file lacks ``model_config`` or ``model`` entries.
    """
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=False)
    model = build_detector(ckpt["model_config"])
    model.load_state_dict(ckpt["model"], strict=True)
    return model.eval()


def config_dict(cfg: DetectorConfig) -> dict[str, Any]:
    """Return the config as a plain dict (stored in checkpoints)."""
    return asdict(cfg)
