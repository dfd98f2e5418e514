"""Active-learning priority: terms, per-ECG score, batch ranking, the simulation loop."""

from __future__ import annotations

import numpy as np

from training.foundation_active import batch_priority, rank_for_review, review_priority
from training.foundation_simulation import simulate


def test_it_prefers_uncertain_novel_and_disputed_ecgs() -> None:
    ref = np.eye(4)[:2]
    sure = review_priority(0.99, None, np.array([1.0, 0, 0, 0]), ref)
    unsure = review_priority(0.5, None, np.array([1.0, 0, 0, 0]), ref)
    novel = review_priority(0.99, None, np.array([0, 0, 1.0, 0]), ref)
    assert unsure > sure and novel > sure
    agree = review_priority(0.9, 3.0, np.array([1.0, 0, 0, 0]), ref)
    disagree = review_priority(0.9, -3.0, np.array([1.0, 0, 0, 0]), ref)
    assert disagree > agree
    assert 0.0 <= sure <= 1.0


def test_it_ranks_a_batch_highest_priority_first() -> None:
    p = np.array([0.99, 0.5, 0.9, 0.01])
    emb = np.tile(np.array([1.0, 0.0]), (4, 1))
    order = rank_for_review(p, None, emb, emb[:1])
    assert order[0] == 1 and order[-1] in (0, 3)
    assert np.allclose(batch_priority(p, None, emb, None)[[0, 3]], batch_priority(p, None, emb, None)[[3, 0]])


def test_it_runs_the_learning_curve_simulation() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = rng.standard_normal((120, 6)) + y[:, None]
    res = simulate(x[:80], y[:80], x[80:], y[80:], seeds=2, start=6, step=6, rounds=3)
    assert res["ranking"].shape == (2, 4) and res["random"].shape == (2, 4)
    assert (res["ranking"][:, -1] > 0.7).all()
