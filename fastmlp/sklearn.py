"""scikit-learn estimators on fastmlp's kernels: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in for :mod:`sklearn.neural_network`: the same constructor parameters, meanings and
fitted attributes wherever fastmlp has the feature, and a clear ``ValueError`` naming the
parameter where it does not (``solver="lbfgs"``, ``nesterovs_momentum=True`` with
momentum, ``loss="poisson"``, multilabel targets).

>>> from fastmlp.sklearn import MLPClassifier
>>> clf = MLPClassifier(hidden_layer_sizes=(16, 16), solver="sgd", momentum=0,
...                     learning_rate_init=0.1, batch_size=32, max_iter=10)
>>> clf.fit(X_train / 255, y_train).score(X_test / 255, y_test)

Beyond scikit-learn:

- ``fit(X, y, validation_data=(X_val, y_val))``: a held-out set you choose, used by
  ``early_stopping`` instead of splitting off ``validation_fraction``; with or without early
  stopping, ``validation_scores_`` and ``validation_loss_curve_`` record it every epoch.
- ``partial_fit(..., validation_data=...)`` with ``early_stopping=True``: each call is one
  epoch; when the score has not improved by ``tol`` for ``n_iter_no_change`` calls, the best
  parameters are restored and ``stopped_early_`` becomes True.
- ``threads``: how many threads the kernels use (default: every core); no BLAS involved.
- float32 throughout: inputs are converted to float32 once, parameters and arithmetic are
  float32 (``predict_proba`` returns float32; regression ``predict`` float64, as scikit-learn's
  contract asks).
- ``backend`` ({"numba", "numpy", "python"}), ``lr_schedule`` ({None, "step", "cosine",
  "onecycle"} over ``max_iter`` epochs) and ``init`` (default ``"sklearn"``: scikit-learn's
  uniform initialisation of weights and biases; or one of fastmlp's, e.g. ``"he"``).
- ``sample_weight`` (any weights >= 0): each batch's loss and gradient are the weighted mean
  over its rows, as in scikit-learn; ``alpha`` is divided by the mean batch's weight sum
  (scikit-learn: each batch's own). The validation split of ``early_stopping`` splits the
  weights too, and the validation score is weighted. On a backend whose kernels take no
  weights yet, whole-number weights repeat rows instead and fractional ones are refused.
- :meth:`save` / :meth:`load`: fastmlp's safetensors model file (loads into PyTorch too).

Differences to know: the binary classifier has two softmax outputs (scikit-learn: one
logistic), so ``coefs_[-1]`` has two columns; the L2 term (``alpha``) also shrinks the
biases; inputs are not scaled for you (as in scikit-learn: divide pixels by 255).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

try:
    from sklearn.base import ClassifierMixin, RegressorMixin
except ImportError as exc:  # scikit-learn is an optional dependency
    raise ImportError(
        "fastmlp.sklearn needs scikit-learn: pip install 'fastmlp[sklearn]' "
        "(or pip install scikit-learn)"
    ) from exc
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import column_or_1d, validate_data

from fastmlp import sklearn_parts
from fastmlp.sklearn_base import BaseMLP

__all__ = ["MLPClassifier", "MLPRegressor", "load_estimator", "expected_failed_checks"]

_SAMPLE_WEIGHT_XFAIL = (
    "training is stochastic mini-batch descent: a row of weight 2 is one row of one batch "
    "(or, on a backend without weighted kernels, visited twice in another order), the same "
    "row repeated is two rows of (mostly) two batches, shuffled with the others, so the two "
    "fits are not equal (scikit-learn runs this check on its MLPs only with solver='lbfgs')"
)


def _init_params(est: Any, hidden_layer_sizes, activation, kw: dict[str, Any]) -> None:
    est.hidden_layer_sizes = hidden_layer_sizes
    est.activation = activation
    for name, value in kw.items():
        setattr(est, name, value)


class MLPClassifier(ClassifierMixin, BaseMLP):
    """Multi-layer perceptron classifier (softmax and cross-entropy) trained by fastmlp.

    Parameters are those of :class:`sklearn.neural_network.MLPClassifier` (same defaults),
    plus ``backend``, ``threads``, ``lr_schedule`` and ``init``; see the module docstring.

    Attributes
    ----------
    classes_, n_features_in_, feature_names_in_, coefs_, intercepts_, loss_, loss_curve_,
    best_loss_, n_iter_, t_, n_layers_, n_outputs_, out_activation_
        As in scikit-learn (coefs_ are (fan_in, fan_out)).
    validation_scores_, best_validation_score_
        Accuracy on the validation set per epoch, and the best (early stopping).
    validation_loss_curve_
        Cross-entropy on the validation set per epoch (None without validation data).
    stopped_early_
        True when the last fit or partial_fit ended by early stopping.
    model_
        The trained :class:`fastmlp.MLP`.
    """

    _output = "softmax"
    _y_validation = {"multi_output": True}

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        threads=None,
        lr_schedule=None,
        init="sklearn",
    ):
        kw = dict(locals())
        for name in ("self", "hidden_layer_sizes", "activation", "__class__"):
            kw.pop(name, None)
        _init_params(self, hidden_layer_sizes, activation, kw)

    def fit(self, X, y, sample_weight=None, validation_data=None) -> MLPClassifier:
        """Train from scratch (or on, with ``warm_start``) for up to ``max_iter`` epochs."""
        return self._fit(X, y, sample_weight, validation_data, incremental=False)

    def partial_fit(
        self, X, y, sample_weight=None, classes=None, validation_data=None
    ) -> MLPClassifier:
        """One epoch over ``(X, y)``; ``classes`` (every label) is required on the first call."""
        return self._fit(X, y, sample_weight, validation_data, incremental=True, classes=classes)

    def predict(self, X) -> np.ndarray:
        """The most probable class label of each row."""
        outputs = self._outputs(X)  # first: it checks the estimator is fitted
        return self.classes_[outputs.argmax(axis=1)]

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, float32, columns in the order of ``classes_``."""
        return self._outputs(X)

    @classmethod
    def load(cls, path: str | os.PathLike, *, backend: str = "numba") -> MLPClassifier:
        """The estimator saved in ``path`` by :meth:`save`; see :func:`load_estimator`."""
        est = load_estimator(path, backend=backend)
        if not isinstance(est, cls):
            raise ValueError(f"{path} holds a {type(est).__name__}, not a {cls.__name__}")
        return est

    def predict_log_proba(self, X) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.predict_proba(X))

    # --- hooks of BaseMLP -----------------------------------------------------------------

    def _encode_targets(self, y, *, reset: bool, incremental: bool, classes: Any) -> np.ndarray:
        y = np.asarray(y) if not hasattr(y, "shape") else y
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(
                f"multilabel targets (y of shape {y.shape}) are not supported: fastmlp "
                "classifies with one softmax over the classes"
            )
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if incremental and classes is not None:
            given = np.unique(np.asarray(classes))
            if hasattr(self, "classes_") and not reset and not np.array_equal(given, self.classes_):
                raise ValueError(
                    f"classes={given!r} is not the same as on the last call to partial_fit, "
                    f"was {self.classes_!r}"
                )
        if reset:
            if incremental:
                if classes is None:
                    raise ValueError("classes must be passed on the first call to partial_fit")
                self.classes_ = np.unique(np.asarray(classes))
            else:
                self.classes_ = np.unique(y)
            if len(self.classes_) < 2:
                raise ValueError(
                    "MLPClassifier needs samples of at least 2 classes in the data, but the "
                    f"data contains only one class: {self.classes_[0]!r}"
                )
        elif not incremental and not np.array_equal(np.unique(y), self.classes_):
            raise ValueError(
                "warm_start can only be used where `y` has the same classes as in the "
                "previous call to fit"
            )
        return self._class_ids(y)

    def _class_ids(self, y: np.ndarray) -> np.ndarray:
        ids = np.searchsorted(self.classes_, y)
        ids = np.minimum(ids, len(self.classes_) - 1)
        unknown = self.classes_[ids] != y
        if np.any(unknown):
            raise ValueError(
                f"y holds labels not in classes_ {self.classes_.tolist()}: "
                f"{np.unique(y[unknown]).tolist()[:5]}"
            )
        return ids.astype(np.int32)

    def _sample_weights(self, sample_weight, X, y, incremental):
        weights = super()._sample_weights(sample_weight, X, y, incremental)
        # (a partial_fit batch may hold one class; a whole fit may not)
        if not incremental and weights is not None and len(np.unique(y[weights > 0])) < 2:
            raise ValueError(
                "sample_weight leaves only one class with positive weight: MLPClassifier "
                "needs samples of at least 2 classes"
            )
        return weights

    def _n_outputs(self, y: np.ndarray) -> int:
        return len(self.classes_)

    def _stratify(self, y: np.ndarray) -> Any:
        return y

    def _prepare_validation(self, validation_data: Any) -> tuple:
        X_val, y_val = _pair(validation_data)
        X_val = validate_data(self, X_val, reset=False, dtype=np.float32)
        y_val = self._class_ids(column_or_1d(np.asarray(y_val), warn=True))
        return np.ascontiguousarray(X_val), y_val, None

    def _validation_scores(self, outputs, y, weights) -> tuple[float, float]:
        score = accuracy_score(y, outputs.argmax(axis=1), sample_weight=weights)
        picked = outputs[np.arange(len(y)), y].astype(np.float64)
        loss = np.average(-np.log(np.maximum(picked, 1e-12)), weights=weights)
        return float(score), float(loss)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        tags.input_tags.sparse = False
        return tags


class MLPRegressor(RegressorMixin, BaseMLP):
    """Multi-layer perceptron regressor (identity outputs, squared error) trained by fastmlp.

    Parameters are those of :class:`sklearn.neural_network.MLPRegressor` (same defaults;
    ``loss`` is "squared_error" only), plus ``backend``, ``threads``, ``lr_schedule`` and
    ``init``. ``loss_`` is scikit-learn's half squared error plus its L2 term;
    ``validation_scores_`` are R^2 scores and ``validation_loss_curve_`` half squared errors.
    """

    _output = "identity"
    _loss_scale = 0.5  # fastmlp's mean squared error -> scikit-learn's half of it
    _y_validation = {"multi_output": True, "y_numeric": True}

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        backend="numba",
        threads=None,
        lr_schedule=None,
        init="sklearn",
    ):
        kw = dict(locals())
        for name in ("self", "hidden_layer_sizes", "activation", "__class__"):
            kw.pop(name, None)
        _init_params(self, hidden_layer_sizes, activation, kw)

    def fit(self, X, y, sample_weight=None, validation_data=None) -> MLPRegressor:
        """Train from scratch (or on, with ``warm_start``) for up to ``max_iter`` epochs."""
        return self._fit(X, y, sample_weight, validation_data, incremental=False)

    def partial_fit(self, X, y, sample_weight=None, validation_data=None) -> MLPRegressor:
        """One epoch over ``(X, y)``."""
        return self._fit(X, y, sample_weight, validation_data, incremental=True)

    def predict(self, X) -> np.ndarray:
        """Predicted targets, (n,) for one output, else (n, outputs); float64."""
        outputs = self._outputs(X).astype(np.float64)
        return outputs.ravel() if outputs.shape[1] == 1 else outputs

    @classmethod
    def load(cls, path: str | os.PathLike, *, backend: str = "numba") -> MLPRegressor:
        """The estimator saved in ``path`` by :meth:`save`; see :func:`load_estimator`."""
        est = load_estimator(path, backend=backend)
        if not isinstance(est, cls):
            raise ValueError(f"{path} holds a {type(est).__name__}, not a {cls.__name__}")
        return est

    def _validate_params(self) -> None:
        if self.loss != "squared_error":
            raise ValueError(
                f"loss={self.loss!r} is not supported: fastmlp's regressor trains on the "
                "squared error; use loss='squared_error'"
            )
        super()._validate_params()

    def _encode_targets(self, y, *, reset: bool, incremental: bool, classes: Any) -> np.ndarray:
        y = np.asarray(y, dtype=np.float32)
        return np.ascontiguousarray(y.reshape(-1, 1) if y.ndim == 1 else y)

    def _n_outputs(self, y: np.ndarray) -> int:
        return y.shape[1]

    def _grad_scale(self) -> float:
        # fastmlp: mean over every element of (p - t)^2; scikit-learn: half the sum over
        # outputs, mean over rows. The gradients differ by 2 / outputs.
        return 2.0 / self.model_.sizes[-1]

    def _prepare_validation(self, validation_data: Any) -> tuple:
        X_val, y_val = _pair(validation_data)
        X_val = validate_data(self, X_val, reset=False, dtype=np.float32)
        y_val = self._encode_targets(y_val, reset=False, incremental=False, classes=None)
        if y_val.shape != (X_val.shape[0], self.model_.sizes[-1]):
            raise ValueError(f"validation targets have shape {y_val.shape}, expected "
                             f"({X_val.shape[0]}, {self.model_.sizes[-1]})")  # fmt: skip
        return np.ascontiguousarray(X_val), y_val, None

    def _validation_scores(self, outputs, y, weights) -> tuple[float, float]:
        score = r2_score(y, outputs, sample_weight=weights)
        errors = np.mean((outputs.astype(np.float64) - y) ** 2, axis=1)
        return float(score), float(0.5 * np.average(errors, weights=weights))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        tags.input_tags.sparse = False
        return tags


def expected_failed_checks(estimator: Any) -> dict[str, str]:
    """scikit-learn's estimator checks these estimators cannot pass, with the reason.

    For ``parametrize_with_checks(..., expected_failed_checks=expected_failed_checks)``.
    """
    return {"check_sample_weight_equivalence_on_dense_data": _SAMPLE_WEIGHT_XFAIL}


def _pair(validation_data: Any) -> tuple[Any, Any]:
    if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
        raise ValueError("validation_data must be a pair (X_val, y_val)")
    return validation_data[0], validation_data[1]


def load_estimator(
    path: str | os.PathLike, *, backend: str = "numba"
) -> MLPClassifier | MLPRegressor:
    """An estimator from a model file written by ``save`` (or by ``fastmlp train``).

    A file from ``fastmlp train`` becomes an :class:`MLPClassifier` with classes 0..k-1.
    The optimizer state is not in the file: ``partial_fit`` goes on with a fresh one.
    """
    heads = {"softmax": MLPClassifier, "identity": MLPRegressor}
    return sklearn_parts.load_estimator(heads, path, backend=backend)
