"""sample_weight in the scikit-learn estimators: weighted training, scores, pipelines.

The weighted loss itself is tested kernel by kernel in test_sample_weight.py; here, that
the estimators hand the weights on (fit, partial_fit, early stopping's split, score) and
that a backend whose kernels take no weights yet falls back or refuses in one line.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.metrics import accuracy_score  # noqa: E402
from sklearn.model_selection import KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils import estimator_checks  # noqa: E402

import kernels  # noqa: E402
from fastmlp.sample_weights import takes_sample_weight  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402
from tests.kernel_helpers import BACKENDS  # noqa: E402


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=240, centers=3, n_features=5, random_state=1)
    return StandardScaler().fit_transform(X).astype(np.float32), y


def small(**params):
    settings = dict(hidden_layer_sizes=(8,), max_iter=30, random_state=0,
                    learning_rate_init=0.02, backend="numpy")  # fmt: skip
    return MLPClassifier(**{**settings, **params})


def fit(est, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning: max_iter is the epochs
        return est.fit(*args, **kwargs)


def test_fractional_weights_train_and_matter(blobs):
    X, y = blobs
    w = np.where(y == 2, 0.1, 1.5)
    weighted = fit(small(), X, y, sample_weight=w)
    plain = fit(small(), X, y)
    assert weighted.n_iter_ == 30 and np.isfinite(weighted.loss_)
    assert not np.array_equal(weighted.coefs_[0], plain.coefs_[0])
    # Equal weights: the unweighted fit, up to float32 rounding (alpha scaled by the mean).
    same = fit(small(alpha=1e-3), X, y, sample_weight=np.full(len(y), 2.5))
    np.testing.assert_allclose(
        same.predict_proba(X), fit(small(alpha=1e-3), X, y).predict_proba(X), atol=1e-4
    )


def test_weighted_score_and_early_stopping_split(blobs):
    X, y = blobs
    w = np.random.default_rng(0).random(len(y)) + 0.1
    clf = fit(small(early_stopping=True, validation_fraction=0.25, n_iter_no_change=50), X, y,
              sample_weight=w)  # fmt: skip
    assert len(clf.validation_scores_) == clf.n_iter_
    assert clf.score(X, y, sample_weight=w) == pytest.approx(
        accuracy_score(y, clf.predict(X), sample_weight=w)
    )
    part = small()
    for _ in range(3):
        part.partial_fit(X, y, classes=np.unique(y), sample_weight=w)
    assert part.n_iter_ == 3


def test_regressor_with_weights(blobs):
    X, _ = blobs
    target = X[:, 0] * 2 - X[:, 1]
    w = np.linspace(0.0, 3.0, len(X))
    reg = fit(MLPRegressor(hidden_layer_sizes=(8,), max_iter=100, random_state=0, learning_rate_init=0.01,
                           backend="numpy"), X, target, sample_weight=w)  # fmt: skip
    assert np.isfinite(reg.loss_) and reg.score(X, target, sample_weight=w) > 0.8


def test_pipeline_and_cross_val_score_route_the_weights(blobs):
    X, y = blobs
    # Class 2 weighs nothing: a model that got the weights cannot predict it.
    w = np.where(y == 2, 0.0, 1.0 + (y == 1))
    pipe = make_pipeline(StandardScaler(), small())
    fit(pipe, X, y, mlpclassifier__sample_weight=w)
    direct = fit(small(), StandardScaler().fit_transform(X), y, sample_weight=w)
    np.testing.assert_array_equal(pipe[-1].coefs_[0], direct.coefs_[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scores = cross_val_score(make_pipeline(StandardScaler(), small()), X, y, cv=KFold(3),
                                 params={"mlpclassifier__sample_weight": w})  # fmt: skip
    # each fold trained with its rows' weights
    for score, (train, test) in zip(scores, KFold(3).split(X), strict=True):
        fold = fit(make_pipeline(StandardScaler(), small()), X[train], y[train],
                   mlpclassifier__sample_weight=w[train])  # fmt: skip
        assert score == fold.score(X[test], y[test])
    assert np.all(scores < 0.8)  # about 2/3: class 2 is missed


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backend_without_weighted_kernels_repeats_rows_or_refuses(blobs, backend):
    X, y = blobs
    if takes_sample_weight(kernels.backend(backend)):
        clf = fit(small(backend=backend), X, y, sample_weight=np.full(len(y), 0.5))
        assert clf.t_ == len(y) * clf.n_iter_  # each row once per epoch, weighted
        return
    with pytest.raises(ValueError, match=f"the {backend} backend cannot train with fractional"):
        small(backend=backend).fit(X, y, sample_weight=np.full(len(y), 0.5))
    # whole numbers: zero removes a row, k repeats it
    keep = np.arange(len(y)) % 3 != 0
    weighted = fit(small(backend=backend, max_iter=5), X, y, sample_weight=keep.astype(int))
    removed = fit(small(backend=backend, max_iter=5), X[keep], y[keep])
    np.testing.assert_array_equal(weighted.predict_proba(X), removed.predict_proba(X))
    doubled = fit(small(backend=backend, max_iter=5, batch_size=40), X, y,
                  sample_weight=np.full(len(y), 2))  # fmt: skip
    assert doubled.t_ == 2 * len(y) * doubled.n_iter_


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        (lambda n: np.full(n, -1.0), "Negative values in data passed to `sample_weight`"),
        (lambda n: np.zeros(n), "at least one non-zero"),
        (lambda n: np.ones(n + 1), r"sample_weight.shape == \(241,\), expected \(240,\)"),
        (lambda n: np.full(n, 1e39), "does not fit in float32"),
    ],
)
def test_bad_weights_are_refused(blobs, weights, message):
    X, y = blobs
    with pytest.raises(ValueError, match=message):
        small().fit(X, y, sample_weight=weights(len(y)))


@pytest.mark.parametrize("Estimator", [MLPClassifier, MLPRegressor])
@pytest.mark.parametrize(
    "check",
    [
        "check_sample_weights_list",
        "check_sample_weights_not_an_array",
        "check_sample_weights_not_overwritten",
        "check_sample_weights_shape",
        "check_sample_weights_pandas_series",
    ],  # fmt: skip
)
def test_sklearn_weight_checks_on_the_weighted_kernels(Estimator, check):
    """scikit-learn's sample-weight checks, on the numpy backend's weighted loss (the
    default backend's run in test_sklearn_checks.py)."""
    if check == "check_sample_weights_pandas_series":
        pytest.importorskip("pandas")
    getattr(estimator_checks, check)(Estimator.__name__, Estimator(max_iter=50, backend="numpy"))
