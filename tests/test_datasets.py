"""The toy data generators: shapes, dtypes, seeds, the geometry they promise, bad arguments."""

from __future__ import annotations

import numpy as np
import pytest

from fastmlp import datasets
from fastmlp.datasets import (
    BAR_PATTERNS,
    bars,
    circles,
    moons,
    spiral,
    study_sleep,
    train_test_split,
    xor,
)

# Every generator with small arguments, for the properties they all share.
GENERATORS = {
    "xor": lambda seed: xor(3, noise=0.1, seed=seed),
    "bars": lambda seed: bars(10, noise=0.3, seed=seed),
    "moons": lambda seed: moons(51, noise=0.1, seed=seed),
    "circles": lambda seed: circles(51, noise=0.1, seed=seed),
    "spiral": lambda seed: spiral(61, arms=3, noise=0.2, seed=seed),
    "study_sleep": lambda seed: study_sleep(40, noise=1.0, seed=seed),
}


@pytest.mark.parametrize("name", GENERATORS)
def test_float32_inputs_and_matching_rows(name):
    X, y = GENERATORS[name](0)
    assert X.dtype == np.float32 and X.ndim == 2 and X.flags.c_contiguous
    assert len(y) == len(X)
    assert np.isfinite(X).all()


@pytest.mark.parametrize("name", GENERATORS)
def test_same_seed_same_data_other_seed_other_data(name):
    X1, y1 = GENERATORS[name](3)
    X2, y2 = GENERATORS[name](3)
    X3, _ = GENERATORS[name](4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.array_equal(X1, X3)


def test_xor_is_the_truth_table_in_blocks_of_four():
    X, y = xor(5)
    assert X.shape == (20, 2) and y.shape == (20,) and y.dtype == np.float32
    for block in range(5):
        rows = slice(4 * block, 4 * block + 4)
        np.testing.assert_array_equal(X[rows], [[0, 0], [0, 1], [1, 0], [1, 1]])
        np.testing.assert_array_equal(y[rows], [0, 1, 1, 0])
    noisy, _ = xor(5, noise=0.1, seed=1)
    assert 0 < np.abs(noisy - X).max() < 1


def test_bars_without_noise_are_the_four_patterns_with_their_targets():
    X, Y = bars(7, noise=0.0)
    assert X.shape == (28, 4) and Y.shape == (28, 2) and Y.dtype == np.float32
    lookup = {pixels: target for pixels, target in BAR_PATTERNS.values()}
    assert len(lookup) == 4
    for row, target in zip(X, Y, strict=True):
        assert tuple(target) == lookup[tuple(row)]
    # each pattern appears n_per_pattern times, in shuffled order
    patterns, counts = np.unique(X, axis=0, return_counts=True)
    assert len(patterns) == 4 and set(counts) == {7}
    assert not np.array_equal(Y[:14], np.repeat([[1, 0]], 14, axis=0))


def test_bars_base_patterns_are_the_tinynet_ones():
    assert BAR_PATTERNS["horizontal top"] == ((1, 1, 0, 0), (1, 0))
    assert BAR_PATTERNS["horizontal bottom"] == ((0, 0, 1, 1), (1, 0))
    assert BAR_PATTERNS["vertical left"] == ((1, 0, 1, 0), (0, 1))
    assert BAR_PATTERNS["vertical right"] == ((0, 1, 0, 1), (0, 1))


def test_bars_noise_has_the_requested_spread():
    X, Y = bars(2000, noise=0.3, seed=0)
    clean = np.array([p for p, _ in BAR_PATTERNS.values()], np.float32)
    # the nearest clean pattern of each noisy row recovers the noise
    nearest = clean[((X[:, None, :] - clean[None]) ** 2).sum(-1).argmin(1)]
    assert abs(float((X - nearest).std()) - 0.3) < 0.02


def test_moons_without_noise_lie_on_their_half_circles():
    X, y = moons(101, noise=0.0)
    assert y.dtype == np.int64 and set(np.unique(y)) == {0, 1}
    assert (y == 0).sum() == 51 and (y == 1).sum() == 50
    upper, lower = X[y == 0], X[y == 1]
    np.testing.assert_allclose(np.hypot(*upper.T), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.hypot(lower[:, 0] - 1, lower[:, 1] - 0.5), 1.0, atol=1e-6)
    assert (upper[:, 1] >= -1e-6).all() and (lower[:, 1] <= 0.5 + 1e-6).all()


def test_circles_without_noise_have_radius_one_and_factor():
    X, y = circles(200, noise=0.0, factor=0.3)
    radius = np.hypot(*X.T)
    np.testing.assert_allclose(radius[y == 0], 1.0, atol=1e-6)
    np.testing.assert_allclose(radius[y == 1], 0.3, atol=1e-6)
    assert len(np.unique(X[y == 0], axis=0)) == 100  # no point drawn twice


@pytest.mark.parametrize("arms", [2, 3])
def test_spiral_has_one_class_per_arm_within_the_unit_disc(arms):
    X, y = spiral(300, arms=arms, noise=0.0)
    assert set(np.unique(y)) == set(range(arms))
    assert np.bincount(y).tolist() == [300 // arms] * arms
    assert np.hypot(*X.T).max() <= 1 + 1e-6
    # without noise each arm's angle grows steadily with the radius
    for k in range(arms):
        arm = X[y == k]
        order = np.argsort(np.hypot(*arm.T))
        angle = np.unwrap(np.arctan2(arm[order, 0], arm[order, 1]))
        assert (np.diff(angle[1:]) > 0).all()


def test_study_sleep_follows_its_rule_without_noise():
    X, y = study_sleep(500, noise=0.0, seed=2)
    studied, slept = X[:, 0], X[:, 1]
    assert studied.min() >= 0 and studied.max() <= 10
    assert slept.min() >= 3 and slept.max() <= 10
    assert y.dtype == np.float32 and set(np.unique(y)) == {0.0, 1.0}
    np.testing.assert_array_equal(y, (studied + 0.5 * slept >= 8).astype(np.float32))


@pytest.mark.parametrize(
    "call",
    [
        lambda: moons(100, noise=-0.1),
        lambda: moons(1),
        lambda: circles(100, factor=1.0),
        lambda: spiral(100, arms=1),
        lambda: bars(0),
        lambda: xor(2, seed=-1),
        lambda: study_sleep(10, noise=float("nan")),
    ],
    ids=[
        "negative noise",
        "one point",
        "factor 1",
        "one arm",
        "no copies",
        "bad seed",
        "nan noise",
    ],
)
def test_bad_arguments_are_refused(call):
    with pytest.raises(ValueError):
        call()


def test_train_test_split_keeps_rows_together_and_covers_everything():
    X = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, seed=1)
    assert X_train.shape == (7, 2) and X_test.shape == (3, 2)
    np.testing.assert_array_equal(X_train[:, 0] // 2, y_train)
    np.testing.assert_array_equal(X_test[:, 0] // 2, y_test)
    assert sorted([*y_train, *y_test]) == list(range(10))
    again = train_test_split(X, y, test_size=0.3, seed=1)
    np.testing.assert_array_equal(again[3], y_test)


def test_train_test_split_counts_and_order():
    y = np.arange(10)
    train, test = train_test_split(y, test_size=4, shuffle=False)
    np.testing.assert_array_equal(train, np.arange(6))
    np.testing.assert_array_equal(test, np.arange(6, 10))


@pytest.mark.parametrize("size", [0.0, 1.0, 0, 10, 1.5])
def test_train_test_split_refuses_an_empty_side(size):
    with pytest.raises(ValueError):
        train_test_split(np.arange(10), test_size=size)


def test_train_test_split_refuses_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="different numbers of rows"):
        train_test_split(np.arange(10), np.arange(9))


def test_public_names_are_exported():
    for name in datasets.__all__:
        assert hasattr(datasets, name)


def test_numpy_scalars_are_accepted_and_bools_refused():
    X, y = moons(np.int64(20), noise=np.float32(0.1), seed=np.int64(3))
    np.testing.assert_allclose(X, moons(20, noise=0.1, seed=3)[0], rtol=1e-6)
    _, test = train_test_split(np.arange(10), test_size=np.float32(0.3))
    assert len(test) == 3
    assert len(train_test_split(np.arange(10), test_size=np.int64(4))[1]) == 4
    with pytest.raises(ValueError, match="seed must be an integer, got True"):
        moons(20, seed=True)
    with pytest.raises(ValueError, match="noise must be a finite number, got True"):
        spiral(20, noise=True)
    with pytest.raises(ValueError, match="test_size must be a finite number, got True"):
        train_test_split(np.arange(10), test_size=True)


def test_stratified_split_keeps_each_class_share():
    y = np.repeat([0, 1, 2], [50, 30, 20])
    X = np.arange(100)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, stratify=y, seed=2)
    assert np.bincount(y_test).tolist() == [15, 9, 6]
    assert sorted([*X_train, *X_test]) == list(range(100))
    np.testing.assert_array_equal(y[X_test], y_test)
    assert list(X_test) == sorted(X_test)  # the rows keep their order
    again = train_test_split(X, y, test_size=0.3, stratify=y, seed=2)[1]
    other = train_test_split(X, y, test_size=0.3, stratify=y, seed=3)[1]
    np.testing.assert_array_equal(again, X_test)
    assert list(other) != list(X_test)
    # 7 rows of 3 classes: the largest remainders take the rows left over.
    _, held = datasets.holdout_indices(9, 7, classes=[0, 0, 0, 0, 1, 1, 1, 2, 2])
    assert len(held) == 7
    with pytest.raises(ValueError, match="shuffle"):
        train_test_split(X, y, stratify=y, shuffle=False)
