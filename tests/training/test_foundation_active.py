"""Active-learning priority: terms, per-ECG score, batch ranking, label audit, the simulation loops."""

from __future__ import annotations

import numpy as np
import pytest

from training.foundation_active import (
    audit_priority,
    batch_priority,
    label_disagreement,
    rank_for_audit,
    rank_for_review,
    review_priority,
)
from training.foundation_label_noise import STRATEGIES
from training.foundation_label_noise import simulate as noise_simulate
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


def test_it_ranks_a_contradicted_label_above_a_confirmed_confident_one() -> None:
    p = np.array([0.95, 0.95, 0.5, 0.05])
    given = np.array([0, 1, 1, 0])  # 0: flipped (model sure it is abnormal); 1 and 3: confirmed; 2: borderline
    assert np.allclose(label_disagreement(p, given), [0.95, 0.05, 0.5, 0.05])
    assert rank_for_audit(p, given)[0] == 0
    assert audit_priority(p, given)[0] > audit_priority(p, given)[1]
    # Uncertainty alone ignores the label: the flipped label ties with the confirmed one.
    assert batch_priority(p, None, np.ones((4, 1)), None)[0] == batch_priority(p, None, np.ones((4, 1)), None)[1]
    with pytest.raises(ValueError, match="0/1"):
        label_disagreement(p, np.array([0, 1, 2, 0]))


def test_it_finds_flipped_labels_faster_by_disagreement_than_at_random() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    x = rng.standard_normal((300, 4)) + 2.0 * y[:, None]  # separable enough for the cross-fitted classifier
    res = noise_simulate(x, y, rates=(0.1,), seeds=2, folds=3)[0.1]
    assert set(res) == set(STRATEGIES) and res["random"].shape == (2, 300)
    assert np.allclose(res["random"][:, -1], 1.0)  # every flip is found once the whole pool is reviewed
    assert res["disagreement"].mean() > res["uncertainty"].mean() > 0
    assert res["disagreement"].mean() > res["random"].mean() + 0.2
