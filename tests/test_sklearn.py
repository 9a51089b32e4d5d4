"""fastmlp.sklearn in scikit-learn's machinery, and what it adds to scikit-learn's MLPs."""

from __future__ import annotations

import math
import pickle
import subprocess
import sys

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from fastmlp import MLP  # noqa: E402
from fastmlp.sklearn import MLPClassifier, MLPRegressor  # noqa: E402


@pytest.fixture(scope="module")
def blobs():
    X, y = make_blobs(n_samples=300, centers=3, n_features=6, random_state=0)
    return StandardScaler().fit_transform(X), y


def small(**params):
    settings = dict(hidden_layer_sizes=(16,), max_iter=60, random_state=0, learning_rate_init=0.01)
    return MLPClassifier(**{**settings, **params})


def test_import_fastmlp_imports_neither_sklearn_nor_dask():
    code = ("import sys, fastmlp, fastmlp.model, fastmlp.cli; fastmlp.cli.build_parser(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'dask', "
            "'distributed')))")  # fmt: skip
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_pipeline_cross_val_score_grid_search_and_clone(blobs):
    X, y = blobs
    pipeline = make_pipeline(StandardScaler(), small())
    assert cross_val_score(pipeline, X, y, cv=3).mean() > 0.9
    search = GridSearchCV(small(), {"learning_rate_init": [0.001, 0.01]}, cv=2, n_jobs=2)
    search.fit(X, y)
    assert search.best_params_ == {"learning_rate_init": 0.01}
    assert search.best_estimator_.n_iter_ > 0
    twin = clone(small(threads=1))
    assert twin.get_params() == small(threads=1).get_params() and not hasattr(twin, "model_")


def test_string_labels_and_sklearn_attributes(blobs):
    X, y = blobs
    names = np.array(["cat", "dog", "eel"])[y]
    clf = small().fit(X, names)
    assert clf.classes_.tolist() == ["cat", "dog", "eel"]
    assert set(clf.predict(X)) <= set(names) and clf.score(X, names) > 0.9
    assert [w.shape for w in clf.coefs_] == [(6, 16), (16, 3)]
    assert [b.shape for b in clf.intercepts_] == [(16,), (3,)]
    assert clf.n_features_in_ == 6 and clf.n_outputs_ == 3 and clf.n_layers_ == 3
    assert len(clf.loss_curve_) == clf.n_iter_ and clf.loss_ == clf.loss_curve_[-1]
    # coefs_ are (in, out): scikit-learn's forward pass with them gives predict_proba
    hidden = np.maximum(X @ clf.coefs_[0] + clf.intercepts_[0], 0)
    logits = hidden @ clf.coefs_[1] + clf.intercepts_[1]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    expected /= expected.sum(1, keepdims=True)
    proba = clf.predict_proba(X)
    assert proba.dtype == np.float32 and clf.coefs_[0].dtype == np.float32
    np.testing.assert_allclose(proba, expected, atol=1e-5)


def test_feature_names_in(blobs):
    pd = pytest.importorskip("pandas")
    X, y = blobs
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(6)])
    clf = small(max_iter=5).fit(frame, y)
    assert clf.feature_names_in_.tolist() == list(frame.columns)


def test_pickle_keeps_predictions_and_optimizer_state(blobs):
    X, y = blobs
    clf = small(max_iter=5).fit(X, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))
    # the Adam state and the shuffling stream travel too: more partial_fit agrees
    clf.partial_fit(X, y)
    again.partial_fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), clf.predict_proba(X))


def test_save_and_load_the_model_file(blobs, tmp_path):
    X, y = blobs
    labels = np.array(["a", "b", "c"])[y]
    clf = small(max_iter=5).fit(X, labels)
    clf.save(tmp_path / "clf.safetensors")
    loaded = MLPClassifier.load(tmp_path / "clf.safetensors")
    assert loaded.classes_.tolist() == ["a", "b", "c"]
    assert loaded.get_params()["hidden_layer_sizes"] == (16,)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    plain = MLP.load(tmp_path / "clf.safetensors")  # a plain fastmlp model file too
    np.testing.assert_array_equal(plain.predict_proba(X.astype(np.float32)), clf.predict_proba(X))
    with pytest.raises(ValueError, match="not a MLPRegressor"):
        MLPRegressor.load(tmp_path / "clf.safetensors")


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(solver="lbfgs"), "solver='lbfgs' is not supported"),
        (dict(solver="sgd", momentum=0.9), "nesterovs_momentum=True is not supported"),
        (dict(activation="softplus"), "activation"),
        (dict(threads=0), "threads"),
        (dict(lr_schedule="cosine", learning_rate="adaptive"), "lr_schedule"),
        (dict(beta_2=1.0), "beta_2"),
    ],
)
def test_unsupported_values_name_the_parameter(blobs, params, message):
    with pytest.raises(ValueError, match=message):
        small(**params).fit(*blobs)


def test_unsupported_targets_and_weights(blobs):
    X, y = blobs
    with pytest.raises(ValueError, match="multilabel"):
        small().fit(X, np.eye(3)[y])
    with pytest.raises(ValueError, match="poisson"):
        MLPRegressor(loss="poisson").fit(X, X[:, 0])


def test_validation_data_and_early_stopping(blobs):
    X, y = blobs
    clf = small(early_stopping=True, n_iter_no_change=3, max_iter=200, learning_rate_init=0.05)
    clf.fit(X[:200], y[:200], validation_data=(X[200:], y[200:]))
    assert clf.stopped_early_ and clf.n_iter_ < 200
    assert len(clf.validation_scores_) == len(clf.validation_loss_curve_) == clf.n_iter_
    assert clf.best_validation_score_ == max(clf.validation_scores_)
    # the best epoch's parameters are restored
    assert clf.score(X[200:], y[200:]) == pytest.approx(clf.best_validation_score_)
    # without early stopping the validation loss is still recorded every epoch
    plain = small(max_iter=7).fit(X[:200], y[:200], validation_data=(X[200:], y[200:]))
    assert len(plain.validation_loss_curve_) == 7 and plain.best_validation_score_ is None


def test_partial_fit_with_early_stopping(blobs):
    X, y = blobs
    clf = small(early_stopping=True, n_iter_no_change=2, learning_rate_init=0.05)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    with pytest.raises(ValueError, match="validation_data"):
        clf.partial_fit(X, y, classes=[0, 1, 2])
    for _ in range(100):
        clf.partial_fit(X[:200], y[:200], classes=[0, 1, 2], validation_data=(X[200:], y[200:]))
        if clf.stopped_early_:
            break
    assert clf.stopped_early_
    assert clf.score(X[200:], y[200:]) == pytest.approx(clf.best_validation_score_)


def test_regressor_sgd_step_has_sklearn_meaning():
    """One full-batch SGD step of scikit-learn's half squared error, checked by hand."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3)).astype(np.float32)
    Y = rng.normal(size=(20, 2)).astype(np.float32)
    params = dict(
        hidden_layer_sizes=(4,),
        activation="identity",
        solver="sgd",
        momentum=0.0,
        alpha=0.0,
        batch_size=20,
        learning_rate_init=0.1,
        shuffle=False,
        random_state=3,
    )
    reg = MLPRegressor(max_iter=1, **params)
    start = MLPRegressor(max_iter=1, **params)
    start._validate_params()
    start._initialize(X, Y)  # the same seed: the same initial network
    (w1, w2), (b1, b2) = start.coefs_, start.intercepts_
    hidden = X @ w1 + b1
    error = hidden @ w2 + b2 - Y  # d(0.5 * mean over rows of sum over outputs) / d(output)
    g_w2, g_b2 = hidden.T @ error / 20, error.mean(0)
    back = error @ w2.T
    g_w1, g_b1 = X.T @ back / 20, back.mean(0)
    reg.fit(X, Y)
    for got, w, g in zip(reg.coefs_ + reg.intercepts_, [w1, w2, b1, b2], [g_w1, g_w2, g_b1, g_b2],
                         strict=True):  # fmt: skip
        np.testing.assert_allclose(got, w - 0.1 * g, atol=1e-5)
    assert reg.loss_ == pytest.approx(0.5 * np.mean(error**2), rel=1e-4)
    assert math.isfinite(reg.score(X, Y))


def test_learning_rate_schedules_and_warm_start(blobs):
    X, y = blobs
    adaptive = small(solver="sgd", momentum=0.0, learning_rate="adaptive", tol=10.0,
                     n_iter_no_change=1, max_iter=6)  # fmt: skip
    adaptive.fit(X, y)  # never improves by tol=10: after the first epoch, /5 every 2 epochs
    assert adaptive._lr == pytest.approx(0.01 / 5**2)
    inverse = small(solver="sgd", momentum=0.0, learning_rate="invscaling", max_iter=3)
    inverse.fit(X, y)
    assert inverse._lr == pytest.approx(0.01 / (inverse.t_ + 1) ** 0.5)
    cosine = small(lr_schedule="cosine", max_iter=4).fit(X, y)
    assert cosine.n_iter_ == 4 and np.isfinite(cosine.loss_)
    warm = small(max_iter=3, warm_start=True).fit(X, y)
    first = warm.coefs_[0].copy()
    warm.fit(X, y)  # goes on from the fitted network, and keeps counting
    assert warm.n_iter_ == 6 and len(warm.loss_curve_) == 6
    assert not np.array_equal(first, warm.coefs_[0])


def test_divergence_keeps_the_last_good_parameters(blobs):
    X, y = blobs
    clf = small(solver="sgd", momentum=0.0, learning_rate_init=1e12, max_iter=5)
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="diverged"):
        clf.fit(X * 1e3, y)
    assert all(np.isfinite(w).all() for w in clf.coefs_)


def test_load_a_plain_fastmlp_model_file_and_a_regressor(blobs, tmp_path):
    X, y = blobs
    model = MLP([6, 5, 3], activation="tanh", seed=1)
    model.fit(X.astype(np.float32), y, epochs=2, progress=False)
    model.save(tmp_path / "plain.safetensors")
    clf = MLPClassifier.load(tmp_path / "plain.safetensors")
    assert clf.classes_.tolist() == [0, 1, 2] and clf.activation == "tanh"
    assert clf.hidden_layer_sizes == (5,) and clf.n_iter_ == 2
    np.testing.assert_array_equal(clf.predict(X), model.predict(X.astype(np.float32)))
    reg = MLPRegressor(hidden_layer_sizes=(8,), max_iter=20, random_state=0).fit(X, X[:, :2])
    reg.save(tmp_path / "reg.safetensors")
    again = MLPRegressor.load(tmp_path / "reg.safetensors")
    np.testing.assert_array_equal(again.predict(X), reg.predict(X))
    assert again.predict(X).dtype == np.float64 and again.loss_curve_ == pytest.approx(
        reg.loss_curve_
    )
