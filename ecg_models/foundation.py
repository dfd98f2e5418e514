"""ECG foundation model: conv encoder -> latent sequence, CPC context network, report decoder, heads.

Reading order (docs/style.md G10): config, building blocks (``Foundation*``), backbone, heads, then the
pure functions used by training (CPC loss, any-lead alignment loss) and decoding (greedy, beam,
and a TorchScript-scriptable greedy generator for serving).

Serving signature (``FoundationModel.forward``)::

    signal (B, 12, 1000) float32, lead_mask (B, 12) bool
      -> abnormal_logit (B,), superclass_logits (B, 5), statement_logits (B, S), embedding (B, 2 * d_model)

and ``FoundationGreedyGenerator.forward(signal, lead_mask, measured=None) -> token_ids (B, max_len) int64``
(BOS not included; PAD after EOS). Inputs come from ``inference.preprocessing.foundation_inputs``;
``measured`` (B, K) float32 is ``inference.clinical.conditioning.measured_vector`` of the measured
findings, required when ``cfg.condition_on_measured`` (and ignored otherwise).
No file or network I/O here except ``from_checkpoint``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

SUPERCLASSES = ("NORM", "MI", "STTC", "CD", "HYP")
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3  # fixed by the tokenizer trainer (special tokens first)


@dataclass
class FoundationConfig:
    """Architecture of the foundation model (stored in every checkpoint)."""

    n_leads: int = 12  # input leads (LEADS_12 order); absent ones are zero and masked
    n_samples: int = 1000  # 10 s at 100 Hz
    channels: tuple[int, ...] = (32, 64, 128)  # residual stage widths after a stride-2 stem; stages 2.. stride 2
    kernel: int = 7  # conv kernel size in the residual stages
    d_model: int = 128  # latent width (the pooled embedding is 2 * d_model: mean and max)
    n_res_blocks: int = 1  # stride-1 residual blocks at d_model after the stages
    cpc_offsets: tuple[int, ...] = (2, 4, 8, 12, 16)  # CPC predicts z_{t+k} for these k (latent steps, 80 ms each)
    cpc_negatives: str = (
        "shifted"  # "shifted" (same-record circular shifts + batch) or "sampled" (cpc_info_nce_sampled)
    )
    cpc_exclude_steps: int = 15  # sampled: no same-record negative within this many steps of the positive
    cpc_n_sampled: int = 64  # sampled: (record, time) candidates drawn from the batch per offset
    n_superclasses: int = 5  # PTB-XL diagnostic superclasses (SUPERCLASSES order)
    statement_codes: tuple[str, ...] = ()  # SCP statements with a head, in output order
    vocab_size: int = 512  # tokenizer vocabulary (special ids PAD/BOS/EOS/UNK = 0/1/2/3)
    dec_layers: int = 2  # transformer decoder layers
    dec_heads: int = 4  # attention heads in the decoder
    dec_ff: int = 256  # decoder feed-forward width
    max_len: int = 40  # longest generated report in tokens (EOS included)
    dropout: float = 0.1  # dropout in the decoder and before the heads
    condition_on_heads: bool = True  # add the heads' (detached) probabilities as one extra memory token
    condition_on_measured: bool = False  # add the measured-findings vector as one more memory token
    n_measured: int = 21  # K: length of inference.clinical.conditioning.MEASURED_FINDINGS

    @property
    def n_statements(self) -> int:
        return len(self.statement_codes)


# --- building blocks --------------------------------------------------------------------------


class FoundationResBlock(nn.Module):
    """Two Conv1d -> GroupNorm -> GELU with a (projected) shortcut; the first conv may stride."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, stride=stride, padding=kernel // 2)
        self.norm1 = nn.GroupNorm(8, c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, padding=kernel // 2)
        self.norm2 = nn.GroupNorm(8, c_out)
        self.short = nn.Identity() if c_in == c_out and stride == 1 else nn.Conv1d(c_in, c_out, 1, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.gelu(self.norm1(self.conv1(x)))
        return F.gelu(self.norm2(self.conv2(y)) + self.short(x))


class FoundationEncoder(nn.Module):
    """(B, 12, N) signal + (B, 12) lead mask -> (B, T, D) latents, T = N / 2**len(channels).

    A stride-2 stem, then one residual stage per entry of ``channels`` (the first at stride 1,
    the others at stride 2), a 1x1 projection to ``d_model`` and ``n_res_blocks`` more blocks.
    Masked leads are zeroed, and the mask itself is embedded and added to every latent step, so
    the encoder knows which leads it was given (any-lead input).
    """

    def __init__(self, cfg: FoundationConfig) -> None:
        super().__init__()
        c0 = cfg.channels[0]
        blocks: list[nn.Module] = [nn.Conv1d(cfg.n_leads, c0, 15, stride=2, padding=7), nn.GroupNorm(8, c0), nn.GELU()]
        c_in = c0
        for i, c in enumerate(cfg.channels):
            blocks.append(FoundationResBlock(c_in, c, cfg.kernel, 1 if i == 0 else 2))
            c_in = c
        blocks.append(nn.Conv1d(c_in, cfg.d_model, 1))
        blocks.extend(FoundationResBlock(cfg.d_model, cfg.d_model, 3, 1) for _ in range(cfg.n_res_blocks))
        self.blocks = nn.Sequential(*blocks)
        self.mask_embed = nn.Linear(cfg.n_leads, cfg.d_model)
        self.norm = nn.LayerNorm(cfg.d_model)

    def forward(self, signal: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        m = lead_mask.to(signal.dtype)
        h = self.blocks(signal * m.unsqueeze(-1)).transpose(1, 2)  # (B, T, D)
        return self.norm(h + self.mask_embed(m).unsqueeze(1))


class FoundationCPC(nn.Module):
    """Autoregressive GRU context over latents plus one linear predictor per future step k."""

    def __init__(self, cfg: FoundationConfig) -> None:
        super().__init__()
        self.gru = nn.GRU(cfg.d_model, cfg.d_model, batch_first=True)
        self.offsets = tuple(cfg.cpc_offsets)
        self.predictors = nn.ModuleList(nn.Linear(cfg.d_model, cfg.d_model) for _ in cfg.cpc_offsets)
        self.negatives = cfg.cpc_negatives
        self.exclude_steps = cfg.cpc_exclude_steps
        self.n_sampled = cfg.cpc_n_sampled

    def forward(self, latents: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return the InfoNCE loss of predicting z_{t+k} from c_t (see :func:`cpc_info_nce`)."""
        context, _ = self.gru(latents)
        if self.negatives == "shifted":
            return cpc_info_nce(context, latents, self.predictors, self.offsets)
        if self.negatives == "sampled":
            return cpc_info_nce_sampled(
                context, latents, self.predictors, self.offsets, self.exclude_steps, self.n_sampled, generator
            )
        raise ValueError(f"cpc_negatives must be 'shifted' or 'sampled', got {self.negatives!r}")


def cpc_info_nce(
    context: torch.Tensor,
    latents: torch.Tensor,
    predictors: nn.ModuleList,
    offsets: tuple[int, ...],
    shifts: tuple[int, ...] = (5, 13, 21, 29, 37, 47, 59, 71),
) -> torch.Tensor:
    """InfoNCE over the offsets k: context (B, T, D), latents (B, T, D) -> scalar loss.

    For each k and time t, the positive is the same ECG's z_{t+k}. Negatives: the other ECGs'
    z_{t+k} in the batch (B - 1), plus the same ECG's latents at other times (circular shifts
    by ``shifts`` steps), so that recognising the record is not enough: the context has to
    predict *when* in the cycle the future step falls. Logits are cosine similarities / 0.1.
    """
    b, t, _ = latents.shape
    z = F.normalize(latents, dim=-1)
    rolled = torch.stack([z.roll(s, dims=1) for s in shifts], dim=2) if shifts else z[:, :, :0]  # (B, T, S, D)
    target = torch.arange(b, device=latents.device)
    losses = []
    for k, predictor in zip(offsets, predictors, strict=True):
        if t - k <= 0:
            continue
        pred = F.normalize(predictor(context[:, : t - k]), dim=-1)  # (B, T-k, D)
        batch_logits = torch.einsum("btd,ctd->tbc", pred, z[:, k:])  # (T-k, B, B)
        self_logits = torch.einsum("btd,btsd->tbs", pred, rolled[:, k:])  # (T-k, B, S)
        logits = torch.cat([batch_logits, self_logits], dim=-1) / 0.1
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.repeat(t - k)))
    return torch.stack(losses).mean()


def sample_negatives(
    batch: int, steps: int, n: int, generator: torch.Generator | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw ``n`` candidate negatives uniformly from the batch's latents: (record (n,), time (n,))."""
    rec = torch.randint(0, batch, (n,), generator=generator).to(device)
    time = torch.randint(0, steps, (n,), generator=generator).to(device)
    return rec, time


def negative_allowed(
    cand_rec: torch.Tensor, cand_time: torch.Tensor, batch: int, target_time: torch.Tensor, exclude_steps: int
) -> torch.Tensor:
    """(B, T', M) bool: may candidate m be a negative for anchor (b, t) whose positive is at ``target_time[t]``?

    Other records' latents always may; the anchor's own record only when it lies more than
    ``exclude_steps`` from the positive (|time - target| > exclude_steps), so a latent from the same
    beat, or the one before or after it, is never pushed away from its own near-copy.
    """
    rec = torch.arange(batch, device=cand_rec.device)
    same = rec.view(-1, 1, 1) == cand_rec.view(1, 1, -1)  # (B, 1, M)
    near = (cand_time.view(1, 1, -1) - target_time.view(1, -1, 1)).abs() <= exclude_steps  # (1, T', M)
    return ~(same & near)


def cpc_info_nce_sampled(
    context: torch.Tensor,
    latents: torch.Tensor,
    predictors: nn.ModuleList,
    offsets: tuple[int, ...],
    exclude_steps: int,
    n_sampled: int,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """InfoNCE with negatives that are not near-copies of the positive: (B, T, D) x 2 -> scalar loss.

    Why: in :func:`cpc_info_nce` the same ECG shifted by 13 steps (1.04 s) is about one RR interval
    away, so at a normal rate it is the next beat at the same phase, a near-copy of the positive,
    and the loss pushes the two apart. Here the negatives for anchor (b, t) and offset k are the
    other ECGs' z_{t+k} (B - 1) plus ``n_sampled`` latents drawn at random (record, time) from the
    batch, of which those in the anchor's own record within ``exclude_steps`` of t+k are masked
    out (:func:`negative_allowed`). ``exclude_steps >= T`` keeps other records only. A window
    cannot remove the same phase two or more beats away, but with ``n_sampled = B`` an anchor gets
    one own-record candidate per offset on average, so such a near-copy is rare instead of certain.
    Logits are cosine similarities / 0.1, as in :func:`cpc_info_nce`.
    """
    b, t, _ = latents.shape
    z = F.normalize(latents, dim=-1)
    target = torch.arange(b, device=latents.device)
    losses = []
    for k, predictor in zip(offsets, predictors, strict=True):
        if t - k <= 0:
            continue
        pred = F.normalize(predictor(context[:, : t - k]), dim=-1)  # (B, T-k, D)
        batch_logits = torch.einsum("btd,ctd->tbc", pred, z[:, k:])  # (T-k, B, B), diagonal = positive
        rec, time = sample_negatives(b, t, n_sampled, generator, latents.device)
        cand = z[rec, time]  # (M, D)
        sampled = torch.einsum("btd,md->tbm", pred, cand)  # (T-k, B, M)
        allowed = negative_allowed(rec, time, b, torch.arange(k, t, device=latents.device), exclude_steps)
        sampled = sampled.masked_fill(~allowed.transpose(0, 1), float("-inf"))
        logits = torch.cat([batch_logits, sampled], dim=-1) / 0.1
        losses.append(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.repeat(t - k)))
    return torch.stack(losses).mean()


class FoundationPositional(nn.Module):
    """Fixed sinusoidal positions (B, L, D) -> (B, L, D), used for latents and tokens."""

    def __init__(self, d_model: int, max_len: int = 2048) -> None:
        super().__init__()
        pos = torch.arange(max_len).unsqueeze(1)
        div = torch.exp(torch.arange(0, d_model, 2) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(pos * div)
        pe[:, 1::2] = torch.cos(pos * div)
        self.register_buffer("pe", pe, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pe[: x.shape[1]].unsqueeze(0)


class FoundationReportDecoder(nn.Module):
    """Transformer decoder: token ids (B, L) + memory (B, M, D) -> next-token logits (B, L, V)."""

    def __init__(self, cfg: FoundationConfig) -> None:
        super().__init__()
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model, padding_idx=PAD_ID)
        self.pos = FoundationPositional(cfg.d_model)
        layer = nn.TransformerDecoderLayer(
            cfg.d_model, cfg.dec_heads, cfg.dec_ff, cfg.dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerDecoder(layer, cfg.dec_layers)
        self.norm = nn.LayerNorm(cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.vocab_size)

    def forward(self, tokens: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        n = tokens.shape[1]
        causal = torch.triu(torch.full((n, n), float("-inf"), device=tokens.device), diagonal=1)
        h = self.pos(self.embed(tokens) * math.sqrt(self.embed.embedding_dim))
        h = self.layers(h, memory, tgt_mask=causal)
        return self.out(self.norm(h))


# --- backbone and heads -----------------------------------------------------------------------


class FoundationHeads(nn.Module):
    """Pooled embedding (B, 2D) -> abnormal logit (B,), superclass (B, 5), statement (B, S) logits."""

    def __init__(self, cfg: FoundationConfig) -> None:
        super().__init__()
        self.drop = nn.Dropout(cfg.dropout)
        self.abnormal = nn.Linear(2 * cfg.d_model, 1)
        self.superclass = nn.Linear(2 * cfg.d_model, cfg.n_superclasses)
        self.statement = nn.Linear(2 * cfg.d_model, max(cfg.n_statements, 0))

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        h = self.drop(embedding)
        return self.abnormal(h).squeeze(-1), self.superclass(h), self.statement(h)


class FoundationModel(nn.Module):
    """Encoder + heads + report decoder (+ CPC context network, used in pretraining only)."""

    def __init__(self, cfg: FoundationConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = FoundationEncoder(cfg)
        self.memory_pos = FoundationPositional(cfg.d_model)
        self.pool_norm = nn.LayerNorm(2 * cfg.d_model)
        self.heads = FoundationHeads(cfg)
        self.decoder = FoundationReportDecoder(cfg)
        self.cpc = FoundationCPC(cfg)
        self.condition_on_heads = cfg.condition_on_heads
        n_findings = 1 + cfg.n_superclasses + cfg.n_statements
        self.findings_embed = nn.Linear(n_findings, cfg.d_model) if cfg.condition_on_heads else nn.Identity()
        self.condition_on_measured = cfg.condition_on_measured
        self.measured_embed = nn.Linear(cfg.n_measured, cfg.d_model) if cfg.condition_on_measured else nn.Identity()

    def encode(self, signal: torch.Tensor, lead_mask: torch.Tensor) -> torch.Tensor:
        """Latent sequence (B, T, D)."""
        return self.encoder(signal, lead_mask)

    def pool(self, latents: torch.Tensor) -> torch.Tensor:
        """Mean- and max-pool latents (B, T, D) -> embedding (B, 2D) (max catches brief events)."""
        return self.pool_norm(torch.cat([latents.mean(dim=1), latents.amax(dim=1)], dim=-1))

    def memory(self, latents: torch.Tensor, measured: torch.Tensor | None = None) -> torch.Tensor:
        """Decoder memory (B, T + 1 (+ 1), D): latents with positions, a findings token, a measured token.

        The findings token embeds the heads' probabilities (detached, so the text loss does not
        move the classifier), letting the report name what the heads detect. The measured token
        (``condition_on_measured``) embeds the measured-findings vector (B, K), so the report can
        follow what the measurements say.
        """
        mem = self.memory_pos(latents)
        if self.condition_on_heads:
            abnormal, superclass, statement = self.heads(self.pool(latents))
            probs = torch.cat([abnormal.unsqueeze(-1), superclass, statement], dim=-1).sigmoid().detach()
            mem = torch.cat([mem, self.findings_embed(probs).unsqueeze(1)], dim=1)
        return _append_measured(mem, self.measured_embed, self.condition_on_measured, measured)

    def forward(
        self, signal: torch.Tensor, lead_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        embedding = self.pool(self.encode(signal, lead_mask))
        abnormal, superclass, statement = self.heads(embedding)
        return abnormal, superclass, statement, embedding

    def report_logits(
        self, tokens: torch.Tensor, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Teacher-forced next-token logits (B, L, V) for input ``tokens`` (BOS-prefixed)."""
        return self.decoder(tokens, self.memory(self.encode(signal, lead_mask), measured))


def _append_measured(mem: torch.Tensor, embed: nn.Module, enabled: bool, measured: torch.Tensor | None) -> torch.Tensor:
    """Append the measured-findings token to the memory when ``enabled`` (shared by eager and scripted)."""
    if not enabled:
        return mem
    if measured is None:
        raise ValueError("this model is conditioned on measured findings: pass measured (B, K) float32")
    return torch.cat([mem, embed(measured.to(mem.dtype)).unsqueeze(1)], dim=1)


def build_foundation(cfg: FoundationConfig | dict[str, Any]) -> FoundationModel:
    """Build a model from a config object or the dict stored in a checkpoint."""
    if isinstance(cfg, dict):
        cfg = {"condition_on_heads": False, **cfg}  # checkpoints written before the findings token
        cfg = FoundationConfig(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items()})
    return FoundationModel(cfg)


def config_dict(cfg: FoundationConfig) -> dict[str, Any]:
    """Return the config as a plain dict (stored in checkpoints)."""
    return asdict(cfg)


def from_checkpoint(path: str | Path, map_location: str = "cpu") -> FoundationModel:
    """Rebuild the model from a checkpoint that embeds its ``model_config`` (eval mode)."""
    ckpt = torch.load(Path(path), map_location=map_location, weights_only=False)
    model = build_foundation(ckpt["model_config"])
    model.load_state_dict({k: v.float() for k, v in ckpt["model"].items()}, strict=True)
    return model.eval()


# --- training losses (pure) -------------------------------------------------------------------


def alignment_loss(sub: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """Feature-distribution alignment of subset-lead embeddings (B, D) with 12-lead ones (B, D).

    MSE between paired embeddings plus matching of the batch mean and standard deviation per
    feature. ``full`` is detached: the 12-lead encoder is the teacher.
    """
    full = full.detach()
    pair = F.mse_loss(sub, full)
    mean = F.mse_loss(sub.mean(0), full.mean(0))
    std = F.mse_loss(sub.std(0, unbiased=False), full.std(0, unbiased=False))
    return pair + mean + std


def random_lead_masks(batch: int, n_leads: int, p_drop: float, generator: torch.Generator) -> torch.Tensor:
    """Bool (batch, n_leads): with probability ``p_drop`` per ECG keep a random non-empty subset."""
    mask = torch.ones(batch, n_leads, dtype=torch.bool)
    for i in range(batch):
        if torch.rand(1, generator=generator).item() < p_drop:
            keep = int(torch.randint(1, n_leads, (1,), generator=generator))
            mask[i] = False
            mask[i, torch.randperm(n_leads, generator=generator)[:keep]] = True
    return mask


# --- decoding ---------------------------------------------------------------------------------


@torch.no_grad()
def greedy_decode(
    model: FoundationModel, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None = None
) -> torch.Tensor:
    """Greedy report ids (B, max_len) int64 (no BOS, PAD after EOS); eager twin of the generator."""
    return FoundationGreedyGenerator(model)(signal, lead_mask, measured)


@torch.no_grad()
def beam_decode(
    model: FoundationModel,
    signal: torch.Tensor,
    lead_mask: torch.Tensor,
    beam: int = 3,
    length_penalty: float = 0.7,
    measured: torch.Tensor | None = None,
) -> list[list[int]]:
    """Beam search per ECG with the eager model (see :func:`beam_search`)."""
    memory = model.memory(model.encode(signal, lead_mask), measured)
    return beam_search(model.decoder, memory, model.cfg.max_len, beam, length_penalty)


@torch.no_grad()
def beam_search(
    step: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    memory: torch.Tensor,
    max_len: int,
    beam: int = 3,
    length_penalty: float = 0.7,
) -> list[list[int]]:
    """Beam search over any decoder ``step(tokens (B, L), memory (B, M, D)) -> logits (B, L, V)``.

    ``step`` and ``memory`` may come from the eager model or from the exported TorchScript parts
    (``FoundationMemory`` and the decoder). Returns token id lists per ECG (no BOS/EOS); score =
    sum log p / len**length_penalty.
    """
    out: list[list[int]] = []
    for i in range(memory.shape[0]):
        mem = memory[i : i + 1]
        beams: list[tuple[float, list[int]]] = [(0.0, [BOS_ID])]
        done: list[tuple[float, list[int]]] = []
        for _ in range(max_len):
            tokens = torch.tensor([b[1] for b in beams], dtype=torch.long)
            logp = step(tokens, mem.expand(len(beams), -1, -1))[:, -1].log_softmax(-1)
            cand: list[tuple[float, list[int]]] = []
            for (score, seq), row in zip(beams, logp, strict=True):
                top = row.topk(beam)
                cand.extend((score + float(v), [*seq, int(j)]) for v, j in zip(top.values, top.indices, strict=True))
            cand.sort(key=lambda c: -c[0])
            beams = []
            for score, seq in cand:
                if seq[-1] == EOS_ID:
                    done.append((score / (len(seq) - 1) ** length_penalty, seq[1:-1]))
                elif len(beams) < beam:
                    beams.append((score, seq))
                if len(beams) == beam:
                    break
            if not beams or len(done) >= beam:
                break
        if not done:  # hit max_len: keep the best unfinished beam
            done = [(s / (len(q) - 1) ** length_penalty, q[1:]) for s, q in beams]
        out.append(max(done, key=lambda d: d[0])[1])
    return out


class FoundationMemory(nn.Module):
    """Scriptable (signal, lead_mask, measured) -> decoder memory (B, M, D): the encoder side of decoding.

    Same computation as ``model.memory(model.encode(signal, lead_mask), measured)`` (a test keeps
    them equal). M = T + 1 (findings token) + 1 when conditioned on measured findings.
    """

    def __init__(self, model: FoundationModel) -> None:
        super().__init__()
        self.encoder = model.encoder
        self.memory_pos = model.memory_pos
        self.pool_norm = model.pool_norm
        self.heads = model.heads
        self.findings_embed = model.findings_embed
        self.condition_on_heads = model.condition_on_heads
        self.measured_embed = model.measured_embed
        self.condition_on_measured = model.condition_on_measured

    def forward(
        self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.heads_and_memory(signal, lead_mask, measured)[4]

    def heads_and_memory(
        self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """One encoder pass: abnormal (B,), superclass (B, 5), statement (B, S) logits, embedding (B, 2D), memory.

        The classifier's outputs and the decoder's memory come from the same latents, so the served
        model (inference.export_foundation) runs the encoder once per ECG for both.
        """
        latents = self.encoder(signal, lead_mask)
        embedding = self.pool_norm(torch.cat([latents.mean(dim=1), latents.amax(dim=1)], dim=-1))
        abnormal, superclass, statement = self.heads(embedding)
        mem = self.memory_pos(latents)
        if self.condition_on_heads:
            probs = torch.cat([abnormal.unsqueeze(-1), superclass, statement], dim=-1).sigmoid().detach()
            mem = torch.cat([mem, self.findings_embed(probs).unsqueeze(1)], dim=1)
        if self.condition_on_measured:
            if measured is None:
                raise ValueError("this model is conditioned on measured findings: pass measured (B, K) float32")
            mem = torch.cat([mem, self.measured_embed(measured.to(mem.dtype)).unsqueeze(1)], dim=1)
        return abnormal, superclass, statement, embedding, mem


class FoundationCachedDecoder(nn.Module):
    """Scriptable one-token step of ``FoundationReportDecoder`` with a key/value cache.

    Same weights and the same arithmetic as the decoder's pre-norm layers (self-attention over
    the tokens so far, cross-attention over the memory, feed-forward), but each step feeds only
    the newest token: its keys and values are appended to a cache, and the memory's keys and
    values are projected once per report instead of once per step. A report of L tokens then
    costs L token passes instead of L(L+1)/2. tests/ecg_models/test_foundation.py keeps its ids
    equal to the full recomputation.
    """

    def __init__(self, decoder: FoundationReportDecoder) -> None:
        super().__init__()
        self.embed = decoder.embed
        self.pe = decoder.pos.pe
        self.layers = decoder.layers.layers
        self.norm = decoder.norm
        self.out = decoder.out
        first = decoder.layers.layers[0]
        self.d_model = first.self_attn.embed_dim
        self.n_heads = first.self_attn.num_heads
        self.scale = math.sqrt(decoder.embed.embedding_dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, D) -> (B, H, L, D/H)."""
        b, n, _ = x.shape
        return x.reshape(b, n, self.n_heads, self.d_model // self.n_heads).transpose(1, 2)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Scaled dot-product attention of (B, H, 1, dh) queries; returns (B, 1, D)."""
        weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), dim=-1)
        out = weights @ v
        return out.transpose(1, 2).reshape(q.shape[0], 1, self.d_model)

    def memory_keys_values(self, memory: torch.Tensor) -> list[torch.Tensor]:
        """Return [k_0, v_0, k_1, v_1, ...]: each layer's cross-attention keys/values of ``memory``."""
        kv: list[torch.Tensor] = []
        d = self.d_model
        for layer in self.layers:
            w, bias = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            kv.append(self._heads(F.linear(memory, w[d : 2 * d], bias[d : 2 * d])))
            kv.append(self._heads(F.linear(memory, w[2 * d :], bias[2 * d :])))
        return kv

    def step(
        self, token: torch.Tensor, position: int, cache: list[torch.Tensor], memory_kv: list[torch.Tensor]
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Return next-token logits (B, V) for ``token`` (B,) at ``position`` and the grown cache.

        ``cache`` is [k_0, v_0, k_1, v_1, ...] of the previous tokens' self-attention (empty at
        position 0).
        """
        d = self.d_model
        h = self.embed(token.unsqueeze(1)) * self.scale + self.pe[position].unsqueeze(0).unsqueeze(0)
        grown: list[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            a = layer.norm1(h)
            w, bias = layer.self_attn.in_proj_weight, layer.self_attn.in_proj_bias
            q = self._heads(F.linear(a, w[:d], bias[:d]))
            k = self._heads(F.linear(a, w[d : 2 * d], bias[d : 2 * d]))
            v = self._heads(F.linear(a, w[2 * d :], bias[2 * d :]))
            if len(cache) > 0:
                k = torch.cat([cache[2 * i], k], dim=2)
                v = torch.cat([cache[2 * i + 1], v], dim=2)
            grown.append(k)
            grown.append(v)
            h = h + layer.self_attn.out_proj(self._attend(q, k, v))
            c = layer.norm2(h)
            cw, cb = layer.multihead_attn.in_proj_weight, layer.multihead_attn.in_proj_bias
            cq = self._heads(F.linear(c, cw[:d], cb[:d]))
            h = h + layer.multihead_attn.out_proj(self._attend(cq, memory_kv[2 * i], memory_kv[2 * i + 1]))
            h = h + layer.linear2(F.relu(layer.linear1(layer.norm3(h))))
        return self.out(self.norm(h))[:, 0], grown


class FoundationGreedyGenerator(nn.Module):
    """Scriptable greedy report generator: (signal, lead_mask, measured) -> token ids (B, max_len) int64.

    The whole decoding loop runs inside one call (``torch.jit.script``-able), so a server does
    not round-trip per token. Output excludes BOS; after EOS every position is PAD.
    """

    def __init__(self, model: FoundationModel, kv_cache: bool = False) -> None:
        super().__init__()
        self.memory = FoundationMemory(model)
        self.decoder = model.decoder
        # The served generator decodes with a key/value cache (inference.export_foundation); the
        # training loops keep the full recomputation they were tuned with.
        self.kv_cache = kv_cache
        self.cached = FoundationCachedDecoder(model.decoder)
        self.max_len = model.cfg.max_len
        self.bos_id = BOS_ID
        self.eos_id = EOS_ID
        self.pad_id = PAD_ID

    def forward(
        self, signal: torch.Tensor, lead_mask: torch.Tensor, measured: torch.Tensor | None = None
    ) -> torch.Tensor:
        return self.ids(self.memory(signal, lead_mask, measured))

    def ids(self, memory: torch.Tensor) -> torch.Tensor:
        """Return the greedy report ids (B, max_len) int64 for decoder ``memory``: no BOS, PAD after EOS."""
        tokens = self.greedy(memory)
        out = torch.full((memory.shape[0], self.max_len), self.pad_id, dtype=torch.long, device=memory.device)
        out[:, : tokens.shape[1] - 1] = tokens[:, 1:]
        return out

    def greedy(self, memory: torch.Tensor) -> torch.Tensor:
        """Return greedy token ids (B, 1 + steps) from decoder ``memory``, BOS first, PAD after EOS."""
        b = memory.shape[0]
        tokens = torch.full((b, 1), self.bos_id, dtype=torch.long, device=memory.device)
        finished = torch.zeros(b, dtype=torch.bool, device=memory.device)
        cache: list[torch.Tensor] = []
        memory_kv: list[torch.Tensor] = self.cached.memory_keys_values(memory) if self.kv_cache else []
        for step in range(self.max_len):
            if self.kv_cache:
                logits, cache = self.cached.step(tokens[:, -1], step, cache, memory_kv)
                nxt = logits.argmax(-1)
            else:
                nxt = self.decoder(tokens, memory)[:, -1].argmax(-1)
            nxt = torch.where(finished, torch.full_like(nxt, self.pad_id), nxt)
            tokens = torch.cat([tokens, nxt.unsqueeze(1)], dim=1)
            finished = finished | (nxt == self.eos_id)
            if bool(finished.all()):
                break
        return tokens


def strip_ids(ids: list[int]) -> list[int]:
    """Cut a generated id row at EOS and drop PAD/BOS (for the tokenizer's ``decode``)."""
    out: list[int] = []
    for i in ids:
        if i == EOS_ID:
            break
        if i not in (PAD_ID, BOS_ID):
            out.append(int(i))
    return out


@dataclass
class FoundationOutput:
    """Friendlier view of one forward pass (wraps, does not replace, the tensor signature)."""

    prob_abnormal: torch.Tensor  # (B,)
    superclass_probs: torch.Tensor  # (B, 5)
    statement_probs: torch.Tensor  # (B, S)
    embedding: torch.Tensor  # (B, 2 * d_model)
    extra: dict[str, Any] = field(default_factory=dict)


def predict(model: FoundationModel, signal: torch.Tensor, lead_mask: torch.Tensor) -> FoundationOutput:
    """Run ``forward`` and apply sigmoids."""
    abnormal, superclass, statement, embedding = model(signal, lead_mask)
    return FoundationOutput(abnormal.sigmoid(), superclass.sigmoid(), statement.sigmoid(), embedding)
