"""The training behind :mod:`fastmlp.sklearn`: scikit-learn's epoch loop over fastmlp's kernels.

scikit-learn's ``MLPClassifier`` decides after every epoch whether to stop (``tol``,
``n_iter_no_change``, ``early_stopping``), changes the learning rate between epochs
(``learning_rate="adaptive"``, ``"invscaling"``) and keeps its optimizer's state from one
``partial_fit`` to the next. :meth:`fastmlp.MLP.fit` starts a fresh optimizer on every call,
so the estimator keeps its own optimizer state and runs each epoch as one call of the
model's ``kernels.train_steps`` (kernels/INTERFACE.md), the function ``MLP.fit`` calls.
Everything else (building, initialising, predicting, saving) goes through :class:`MLP`.
"""

from __future__ import annotations

import math
import os
import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from fastmlp.model import MLP
from fastmlp.sample_weights import as_sample_weight, takes_sample_weight
from fastmlp.schedules import learning_rates
from fastmlp.sklearn_parts import (
    ACTIVATIONS,
    model_from_state,
    model_state,
    row_pool,
    sklearn_init,
    training_record,
    validate_params,
)
from kernels.layout import Optimizer, optimizer_state


class BaseMLP(BaseEstimator):
    """What MLPClassifier and MLPRegressor share; the subclasses add the head and the targets."""

    # set by the subclasses: the output layer, and fastmlp's loss -> scikit-learn's loss_
    _output = "softmax"
    _loss_scale = 1.0

    def _validate_params(self) -> None:
        """Every constructor parameter, checked where fit starts (scikit-learn's convention)."""
        self._hidden = validate_params(self)

    # --- subclass hooks ----------------------------------------------------------------

    def _n_outputs(self, y: np.ndarray) -> int:
        raise NotImplementedError

    def _grad_scale(self) -> float:
        """How much larger fastmlp's loss gradient is than scikit-learn's (1 for cross-entropy)."""
        return 1.0

    def _validation_scores(
        self, outputs: np.ndarray, y: np.ndarray, weights: np.ndarray | None
    ) -> tuple[float, float]:
        """(score, loss) of the validation outputs: accuracy or R^2, and the loss as loss_."""
        raise NotImplementedError

    # --- fitting -----------------------------------------------------------------------

    def _fit(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        validation_data: Any,
        incremental: bool,
        classes: Any = None,
    ) -> BaseMLP:
        self._validate_params()
        first = not hasattr(self, "model_")
        reset = first or not (incremental or self.warm_start)
        X, y = validate_data(
            self, X, y, reset=reset, dtype=np.float32, order="C", **self._y_validation
        )
        y = self._encode_targets(y, reset=reset, incremental=incremental, classes=classes)
        weights = self._sample_weights(sample_weight, X, y, incremental)
        if reset:
            self._initialize(X, y)
        elif X.shape[1] != self.model_.sizes[0] or self._n_outputs(y) != self.model_.sizes[-1]:
            raise ValueError(
                f"data with {X.shape[1]} features and {self._n_outputs(y)} outputs does not fit "
                f"the fitted network {'-'.join(map(str, self.model_.sizes))}"
            )
        early = self.early_stopping
        val = None
        if validation_data is not None:
            val = self._prepare_validation(validation_data)
        elif early and incremental:
            raise ValueError(
                "early_stopping with partial_fit needs a held-out set: pass "
                "partial_fit(X, y, validation_data=(X_val, y_val))"
            )
        elif early:
            X, y, weights, val = self._split_validation(X, y, weights)
        if not incremental or not hasattr(self, "_opt_state"):
            self._opt_state = optimizer_state(self.model_.net, self._kernel_optimizer())
            self._step = 0
            self._lr = float(self.learning_rate_init)
        if val is not None and self.validation_scores_ is None:
            self.validation_scores_, self.validation_loss_curve_ = [], []
        # Weights go to the kernels where they take them; otherwise whole-number weights
        # repeat rows (row_pool), the one way of weighing such a backend has.
        sw = None
        if weights is not None and takes_sample_weight(self.model_.kernels):
            sw, weights = weights.astype(np.float32), None
        pool = row_pool(weights, X.shape[0], self.backend)
        n = len(pool)
        batch_size = self._batch_size(n)
        # scikit-learn divides alpha by the batch's weight sum: the mean batch's here.
        mass = batch_size if sw is None else batch_size * float(sw.mean(dtype=np.float64))
        rule = self._rule(mass)
        threads = self.threads or os.cpu_count() or 1
        self.stopped_early_ = False
        # The backend's copy of the rows, made once for every epoch of this call (numba: the
        # non-zero entries; given X itself, train_steps would collect them on each call).
        inputs = self.model_.kernels.prepare_inputs(X)
        for _ in range(1 if incremental else self.max_iter):
            params, state = self.model_.params.copy(), _copies(self._opt_state)
            loss = self._epoch(inputs, y, pool, batch_size, rule, threads, sw, mass)
            if loss is None:  # diverged: back to the epoch's start, and stop
                self.model_.params[...] = params
                for key, value in state.items():
                    self._opt_state[key][...] = value
                warnings.warn(
                    f"training diverged in iteration {self.n_iter_ + 1} (the loss became "
                    f"NaN or infinite); the parameters before it are kept. Try a smaller "
                    f"learning_rate_init than {self.learning_rate_init:g}.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
                break
            self.n_iter_ += 1
            self.t_ += n
            self.loss_ = loss
            self.loss_curve_.append(loss)
            if self.solver == "sgd" and self.learning_rate == "invscaling":
                self._lr = self.learning_rate_init / (self.t_ + 1) ** self.power_t
            if self.verbose:
                print(f"Iteration {self.n_iter_}, loss = {loss:.8f}")
            if val is not None:
                score, val_loss = self._validation_scores(
                    self.model_.feedforward(val[0]), val[1], val[2]
                )
                self.validation_scores_.append(score)
                self.validation_loss_curve_.append(val_loss)
                if self.verbose:
                    print(f"Validation score: {score:f}, validation loss = {val_loss:.8f}")
            if self._no_improvement(early and val is not None, loss):
                if self._stop_or_slow_down(early and val is not None):
                    self.stopped_early_ = early and val is not None
                    break
            if not incremental and self.n_iter_ == self.max_iter:
                warnings.warn(
                    f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and "
                    "the optimization hasn't converged yet.",
                    ConvergenceWarning,
                    stacklevel=3,
                )
        restore = early and val is not None and (not incremental or self.stopped_early_)
        if restore and self._best_params is not None:
            self.model_.params[...] = self._best_params
        self.model_.history = training_record(self, batch_size, threads, self._kernel_optimizer())
        return self

    def _initialize(self, X: np.ndarray, y: np.ndarray) -> None:
        self._seed = int(check_random_state(self.random_state).randint(np.iinfo(np.int32).max))
        self.model_ = MLP(
            [X.shape[1], *self._hidden, self._n_outputs(y)],
            activation=ACTIVATIONS[self.activation],
            output=self._output,
            init="xavier_uniform" if self.init == "sklearn" else self.init,
            seed=self._seed,
            backend=self.backend,
        )
        self._rng = np.random.default_rng(self._seed)
        if self.init == "sklearn":
            sklearn_init(self.model_, self.activation, self._seed)
        self.n_iter_, self.t_ = 0, 0
        self.loss_curve_ = []
        self.best_loss_ = math.inf
        self._no_improvement_count = 0
        self.validation_scores_ = self.validation_loss_curve_ = None
        self.best_validation_score_ = None
        self._best_params = None

    def _batch_size(self, n: int) -> int:
        if self.batch_size == "auto":
            return min(200, n)
        if self.batch_size > n:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going "
                "to be clipped",
                stacklevel=4,
            )
        return int(np.clip(self.batch_size, 1, n))

    def _kernel_optimizer(self) -> str:
        if self.solver == "adam":
            return "adam"
        return "momentum" if self.momentum > 0 else "sgd"

    def _rule(self, batch_size: float) -> Optimizer:
        """fastmlp's update rule with scikit-learn's meanings.

        scikit-learn's L2 term adds ``alpha * W / batch`` to the mean gradient (batch: its
        rows, or its weight sum with sample_weight); fastmlp adds ``weight_decay * w``, so
        weight_decay is alpha / batch_size (with weights: batch_size * mean weight). For the
        regressor fastmlp's MSE gradient is ``2/outputs`` times scikit-learn's half squared
        error gradient: the decay and Adam's epsilon are scaled alike and the SGD rate divided.
        """
        c = self._grad_scale()
        return Optimizer(
            self._kernel_optimizer(),
            momentum=float(self.momentum),
            beta1=float(self.beta_1),
            beta2=float(self.beta_2),
            eps=float(self.epsilon) * c,
            weight_decay=c * float(self.alpha) / batch_size,
        )

    def _epoch(
        self,
        X: Any,
        y: np.ndarray,
        pool: np.ndarray,
        batch_size: int,
        rule: Optimizer,
        threads: int,
        sample_weight: np.ndarray | None = None,
        mass: float | None = None,
    ) -> float | None:
        """One pass over ``pool`` (row indices); the epoch's loss as loss_, or None if it diverged."""
        model = self.model_
        order = self._rng.permutation(pool) if self.shuffle else pool
        n_batches = math.ceil(len(order) / batch_size)
        if self.lr_schedule is not None:
            epoch = min(self.n_iter_, self.max_iter - 1)
            rates = learning_rates(
                self.lr_schedule, self._lr, epoch, self.max_iter, n_batches
            ).astype(np.float64)
        else:
            rates = np.full(n_batches, self._lr)
        if self.solver == "sgd":
            rates = rates / self._grad_scale()
        with np.errstate(all="ignore"):
            losses, _ = model.kernels.train_steps(
                model.params,
                self._opt_state,
                model.net,
                X,
                y,
                order,
                batch_size,
                rates.astype(np.float32),
                rule,
                self._step,
                threads,
                # the unweighted call stays the unweighted one, for any backend
                **({} if sample_weight is None else {"sample_weight": sample_weight}),
            )
        if not (np.isfinite(losses).all() and np.isfinite(model.params).all()):
            return None
        self._step += n_batches
        rows = np.minimum(batch_size, len(order) - np.arange(n_batches) * batch_size)
        loss = float(np.dot(losses.astype(np.float64), rows)) / len(order)
        return loss * self._loss_scale + self._penalty(batch_size if mass is None else mass)

    def _penalty(self, batch_size: float) -> float:
        """scikit-learn's L2 term of loss_, 0.5 * alpha * ||W||^2 / batch (weights only)."""
        squares = sum(float(np.sum(w.astype(np.float64) ** 2)) for w in self.coefs_)
        return 0.5 * float(self.alpha) * squares / batch_size

    def _no_improvement(self, early: bool, loss: float) -> bool:
        """scikit-learn's _update_no_improvement_count; True once patience is used up."""
        if early:
            score = self.validation_scores_[-1]
            best = -math.inf if self.best_validation_score_ is None else self.best_validation_score_
            if score < best + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > best:
                self.best_validation_score_ = score
                self._best_params = self.model_.params.copy()
        else:
            if loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, loss)
        return self._no_improvement_count > self.n_iter_no_change

    def _stop_or_slow_down(self, early: bool) -> bool:
        """Stop (True), or for sgd with learning_rate='adaptive' divide the rate by 5."""
        what = "Validation score" if early else "Training loss"
        message = (
            f"{what} did not improve more than tol={self.tol:f} for "
            f"{self.n_iter_no_change} consecutive epochs."
        )
        if self.solver == "sgd" and self.learning_rate == "adaptive" and self._lr > 1e-6:
            self._lr /= 5.0
            self._no_improvement_count = 0
            if self.verbose:
                print(f"{message} Setting learning rate to {self._lr:f}")
            return False
        if self.verbose:
            print(f"{message} Stopping.")
        return True

    def _sample_weights(
        self, sample_weight: Any, X: np.ndarray, y: np.ndarray, incremental: bool
    ) -> Any:
        if sample_weight is None:
            return None
        weights = _check_sample_weight(sample_weight, X, dtype=np.float64, ensure_non_negative=True)
        # The checks MLP.fit makes (finite, fits float32, not all zero), one line each.
        return as_sample_weight(weights, X.shape[0]).astype(np.float64)

    def _split_validation(self, X: np.ndarray, y: np.ndarray, weights: Any) -> tuple:
        from sklearn.model_selection import train_test_split

        parts = [X, y] if weights is None else [X, y, weights]
        split = train_test_split(
            *parts,
            random_state=check_random_state(self._seed),
            test_size=self.validation_fraction,
            stratify=self._stratify(y),
        )
        X, X_val, y, y_val = split[:4]
        w, w_val = (split[4], split[5]) if weights is not None else (None, None)
        return X, y, w, (np.ascontiguousarray(X_val), y_val, w_val)

    def _stratify(self, y: np.ndarray) -> Any:
        return None

    # --- the fitted network, as scikit-learn shows it --------------------------------------

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, "model_")

    @property
    def coefs_(self) -> list[np.ndarray]:
        """Weight matrices, layer by layer, (fan_in, fan_out) as scikit-learn lays them out."""
        state = self.model_.state_dict()
        return [state[f"{k}.weight"].T.copy() for k in self.model_.layer_keys()]

    @property
    def intercepts_(self) -> list[np.ndarray]:
        """Bias vectors, layer by layer."""
        state = self.model_.state_dict()
        return [state[f"{k}.bias"] for k in self.model_.layer_keys()]

    @property
    def n_layers_(self) -> int:
        return len(self.model_.sizes)

    @property
    def n_outputs_(self) -> int:
        return self.model_.sizes[-1]

    @property
    def out_activation_(self) -> str:
        return {"softmax": "softmax", "identity": "identity"}[self.model_.output]

    def _outputs(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float32, order="C")
        return self.model_.feedforward(X)

    def save(self, path: str | os.PathLike) -> None:
        """Write the network as fastmlp's safetensors model file (see :meth:`fastmlp.MLP.save`).

        The estimator's parameters, classes and feature names travel in the file's
        metadata; :meth:`load` reads them back. Pickle the estimator to keep its
        optimizer state for more ``partial_fit``.
        """
        check_is_fitted(self)
        self.model_.save(path)

    # --- pickling: the MLP holds its kernels module, which does not pickle ---------------

    def __getstate__(self) -> dict[str, Any]:
        state = dict(super().__getstate__())
        if "model_" in state:
            state["model_"] = model_state(state["model_"])
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if isinstance(state.get("model_"), dict):
            state["model_"] = model_from_state(state["model_"])
        super().__setstate__(state)


def _copies(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: value.copy() for key, value in arrays.items()}
