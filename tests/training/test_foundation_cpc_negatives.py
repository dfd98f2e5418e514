"""CPC negatives (``cpc_negatives="sampled"``): no near-copy of the positive is ever a negative."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from ecg_models.foundation import (
    FoundationConfig,
    build_foundation,
    cpc_info_nce_sampled,
    negative_allowed,
    sample_negatives,
)


def tiny(negatives: str, exclude: int = 3) -> FoundationConfig:
    return FoundationConfig(
        channels=(16, 16, 32),
        d_model=32,
        cpc_offsets=(1, 3),
        cpc_negatives=negatives,
        cpc_exclude_steps=exclude,
        cpc_n_sampled=40,
    )


def test_it_never_allows_a_same_record_negative_inside_the_exclusion_window() -> None:
    rec, time = sample_negatives(4, 30, 500, torch.Generator().manual_seed(0))
    assert rec.shape == time.shape == (500,) and int(rec.max()) < 4 and int(time.max()) < 30
    targets = torch.arange(2, 30)  # positive of anchor t at t + 2
    allowed = negative_allowed(rec, time, 4, targets, exclude_steps=5)
    assert allowed.shape == (4, 28, 500)
    same = torch.arange(4).view(4, 1, 1) == rec.view(1, 1, -1)
    gap = (time.view(1, 1, -1) - targets.view(1, -1, 1)).abs()
    assert not (allowed & same & (gap <= 5)).any()  # nothing inside the window of the anchor's own record
    assert (allowed | same).all()  # every other record's latent stays a negative
    assert (allowed & same & (gap > 5)).any()  # same-record latents far away are kept
    assert not (negative_allowed(rec, time, 4, targets, exclude_steps=30) & same).any()  # window >= T: others only


def test_the_loss_drops_every_excluded_negative() -> None:
    torch.manual_seed(0)
    latents, context = torch.randn(1, 12, 8), torch.randn(1, 12, 8)  # one record: no other-record negatives
    predictors = torch.nn.ModuleList([torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)])

    def loss(exclude: int) -> torch.Tensor:
        return cpc_info_nce_sampled(context, latents, predictors, (1, 3), exclude, 64, torch.Generator().manual_seed(1))

    # Window covering the record: only the positive is left in each row, so the loss is exactly 0.
    assert loss(12).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(0).item() > 0.1  # no window: the same record's other steps are negatives
    assert loss(0).ndim == 0 and torch.isfinite(loss(0))


@pytest.mark.parametrize("negatives", ["shifted", "sampled"])
def test_it_trains_cpc_with_either_negatives(negatives: str) -> None:
    torch.manual_seed(0)
    model = build_foundation(tiny(negatives))
    t = torch.arange(1000).float()
    x = 0.1 * torch.randn(8, 12, 1000) + torch.sin(t / (5 + torch.arange(8).view(8, 1, 1)))
    mask = torch.ones(8, 12, dtype=torch.bool)
    opt = torch.optim.Adam(list(model.encoder.parameters()) + list(model.cpc.parameters()), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(12):
        loss = model.cpc(model.encode(x, mask), gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.8


def test_it_rejects_an_unknown_negatives_mode() -> None:
    model = build_foundation(dataclasses.replace(tiny("sampled"), cpc_negatives="bogus"))
    with pytest.raises(ValueError, match="cpc_negatives"):
        model.cpc(torch.randn(2, 10, 32))
