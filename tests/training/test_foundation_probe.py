"""Linear-probe learning curve: paired stratified subsets, C chosen on validation only."""

from __future__ import annotations

import numpy as np
import pytest

from training.foundation_data import mean_ci
from training.foundation_probe import probe_curve, stratified_subset


def test_it_draws_the_same_stratified_subset_for_a_seed() -> None:
    y = np.array([0] * 90 + [1] * 10)
    a = stratified_subset(y, 0.1, np.random.default_rng(3))
    b = stratified_subset(y, 0.1, np.random.default_rng(3))
    assert np.array_equal(a, b)  # every encoder of a seed sees the same labelled ECGs (paired rows)
    assert (y[a] == 0).sum() == 9 and (y[a] == 1).sum() == 2  # at least two of the rare class


def test_it_scores_test_with_the_c_chosen_on_validation() -> None:
    rng = np.random.default_rng(0)
    y = {k: rng.integers(0, 2, n) for k, n in (("train", 400), ("val", 80), ("test", 80))}
    emb = {k: rng.standard_normal((len(v), 5)) + 1.5 * v[:, None] for k, v in y.items()}
    curve = probe_curve(emb, y, seed=0, fractions=(0.1, 1.0))
    assert set(curve) == {0.1, 1.0}
    for val, test in curve.values():
        assert 0.8 < val <= 1.0 and 0.8 < test <= 1.0
    noise = {k: rng.standard_normal((len(v), 5)) for k, v in y.items()}
    assert probe_curve(noise, y, seed=0, fractions=(1.0,))[1.0][1] < 0.7  # no signal, no AUROC


def test_it_gives_a_t_interval_over_seeds() -> None:
    m, lo, hi = mean_ci(np.array([0.7, 0.8, 0.9]))
    assert m == pytest.approx(0.8) and lo == pytest.approx(0.8 - 4.303 * 0.1 / np.sqrt(3), abs=1e-3) and hi > m
    assert mean_ci(np.array([0.5])) == (0.5, 0.5, 0.5)
