"""The parts of :mod:`fastmlp.sklearn` beside training: the constructor parameters' checks,
scikit-learn's initialisation, pickling the network, and estimators from model files."""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np
from sklearn.utils.validation import check_is_fitted

from fastmlp import validation as check
from fastmlp.model import MLP
from fastmlp.schedules import SCHEDULES
from fastmlp.training import History
from kernels import BACKENDS
from kernels.layout import INITS

# Bound on the rows an epoch visits when integer sample weights repeat rows.
MAX_WEIGHTED_ROWS = 50_000_000
# scikit-learn's activation names -> fastmlp's
ACTIVATIONS = {"relu": "relu", "logistic": "sigmoid", "tanh": "tanh", "identity": "identity"}


def validate_params(est: Any) -> list[int]:
    """Check every constructor parameter of ``est``; return the hidden layer widths."""
    hidden = est.hidden_layer_sizes
    hidden = [hidden] if isinstance(hidden, int | np.integer) else list(hidden)
    hidden = [check.positive_int("hidden_layer_sizes", h) for h in hidden]
    check.choice("activation", est.activation, tuple(ACTIVATIONS))
    if est.solver == "lbfgs":
        raise ValueError(
            "solver='lbfgs' is not supported: fastmlp trains with mini-batches; "
            "use solver='sgd' or 'adam'"
        )
    check.choice("solver", est.solver, ("sgd", "adam"))
    check.non_negative_real("alpha", est.alpha)
    if est.batch_size != "auto":
        check.positive_int("batch_size", est.batch_size)
    check.choice("learning_rate", est.learning_rate, ("constant", "invscaling", "adaptive"))
    check.positive_real("learning_rate_init", est.learning_rate_init)
    check.non_negative_real("power_t", est.power_t)
    check.positive_int("max_iter", est.max_iter)
    check.non_negative_real("tol", est.tol)
    check.probability("momentum", est.momentum)
    if est.solver == "sgd" and est.momentum > 0 and est.nesterovs_momentum:
        raise ValueError(
            "nesterovs_momentum=True is not supported: fastmlp's momentum is the "
            "heavy-ball (PyTorch) kind; pass nesterovs_momentum=False, or momentum=0"
        )
    if not 0 < check.real("validation_fraction", est.validation_fraction) < 1:
        raise ValueError(f"validation_fraction must lie in (0, 1), got {est.validation_fraction!r}")
    check.probability("beta_1", est.beta_1)
    check.probability("beta_2", est.beta_2)
    check.positive_real("epsilon", est.epsilon)
    check.positive_int("n_iter_no_change", est.n_iter_no_change)
    check.positive_int("max_fun", est.max_fun)  # lbfgs only, as in scikit-learn
    check.choice("backend", est.backend, BACKENDS)
    if est.threads is not None:
        check.positive_int("threads", est.threads)
    if est.lr_schedule is not None:
        check.choice("lr_schedule", est.lr_schedule, SCHEDULES)
        if est.learning_rate != "constant":
            raise ValueError(
                f"lr_schedule={est.lr_schedule!r} replaces learning_rate: "
                f"leave learning_rate='constant', got {est.learning_rate!r}"
            )
    check.choice("init", est.init, ("sklearn", "he", "xavier", *INITS))
    return hidden


def sklearn_init(model: MLP, activation: str, seed: int) -> None:
    """scikit-learn's initialisation: weights and biases uniform in +-sqrt(f / (in + out)),
    f = 2 for logistic units, else 6 (Glorot); drawn from ``seed``."""
    factor = 2.0 if activation == "logistic" else 6.0
    rng = np.random.default_rng([seed, 1])
    state = {}
    widths = zip(model.sizes, model.sizes[1:], strict=False)
    for key, (fan_in, fan_out) in zip(model.layer_keys(), widths, strict=True):
        bound = math.sqrt(factor / (fan_in + fan_out))
        state[f"{key}.weight"] = rng.uniform(-bound, bound, (fan_out, fan_in))
        state[f"{key}.bias"] = rng.uniform(-bound, bound, fan_out)
    model.load_state_dict(state)


def model_state(model: MLP) -> dict[str, Any]:
    """What rebuilds ``model``: its architecture, parameters and training record."""
    return {
        "sizes": list(model.sizes),
        "activation": model.activation,
        "output": model.output,
        "loss": model.loss,
        "init": model.init,
        "seed": model.seed,
        "backend": model.backend,
        "params": model.params.copy(),
        "history": model.history,
    }


def model_from_state(saved: dict[str, Any]) -> MLP:
    model = MLP(
        saved["sizes"],
        activation=saved["activation"],
        output=saved["output"],
        loss=saved["loss"],
        init=saved["init"],
        seed=saved["seed"],
        backend=saved["backend"],
    )
    model.params[...] = saved["params"]
    model.history = saved["history"]
    return model


def load_estimator(
    classes: dict[str, type], path: str | os.PathLike, *, backend: str = "numba"
) -> Any:
    """Build the estimator of ``classes[output]`` from ``path`` (see fastmlp.sklearn)."""
    from safetensors import safe_open

    model = MLP.load(path, backend=backend)
    with safe_open(os.fspath(path), "np") as f:
        metadata = f.metadata() or {}
    try:
        saved = json.loads(metadata.get("training", "{}")).get("options", {}).get("sklearn", {})
    except (json.JSONDecodeError, AttributeError):
        saved = {}
    if model.output not in classes:
        raise ValueError(
            f"{path}: a {model.output}-output model is neither classifier nor regressor"
        )
    cls = classes[model.output]
    names = cls().get_params()
    params = {k: v for k, v in saved.get("params", {}).items() if k in names}
    params["backend"] = backend
    params.setdefault("hidden_layer_sizes", tuple(model.sizes[1:-1]))
    inverse = {"sigmoid": "logistic", "relu": "relu", "tanh": "tanh", "identity": "identity"}
    if model.activation not in inverse:
        raise ValueError(f"{path}: activation {model.activation!r} has no scikit-learn name")
    params.setdefault("activation", inverse[model.activation])
    if isinstance(params["hidden_layer_sizes"], list):
        params["hidden_layer_sizes"] = tuple(params["hidden_layer_sizes"])
    est = cls(**params)
    est.model_ = model
    est._seed = model.seed
    est._rng = np.random.default_rng(model.seed)
    est.n_features_in_ = model.sizes[0]
    if "feature_names_in" in saved:
        est.feature_names_in_ = np.asarray(saved["feature_names_in"], dtype=object)
    if model.output == "softmax":
        est.classes_ = np.asarray(saved.get("classes", list(range(model.sizes[-1]))))
    epochs = json.loads(metadata.get("training", "{}")).get("epochs", [])
    est.loss_curve_ = [float(e["loss"]) for e in epochs if "loss" in e]
    est.loss_ = est.loss_curve_[-1] if est.loss_curve_ else None
    est.n_iter_, est.t_ = len(est.loss_curve_), 0
    est.best_loss_ = min(est.loss_curve_, default=float("inf"))
    est._no_improvement_count = 0
    est.validation_scores_ = est.validation_loss_curve_ = est.best_validation_score_ = None
    est._best_params = None
    est.stopped_early_ = False
    check_is_fitted(est)
    return est


def training_record(est: Any, batch_size: int, threads: int, optimizer: str) -> History:
    """A History for the model file's metadata: the epochs and the estimator's settings."""
    params = {k: v for k, v in est.get_params().items() if _is_json(v)}
    extra = {"estimator": type(est).__name__, "params": params}
    if hasattr(est, "classes_"):
        extra["classes"] = est.classes_.tolist()
    if hasattr(est, "feature_names_in_"):
        extra["feature_names_in"] = est.feature_names_in_.tolist()
    return History(
        epochs=[{"epoch": i + 1, "loss": loss} for i, loss in enumerate(est.loss_curve_)],
        options={
            "batch_size": batch_size,
            "optimizer": optimizer,
            "threads": threads,
            "backend": est.backend,
            "sklearn": extra,
        },
    )


def row_pool(weights: np.ndarray | None, n: int, backend: str = "numba") -> np.ndarray:
    """Row indices one epoch visits: each row once, or sample_weight times (whole numbers,
    for a backend whose kernels take no weights)."""
    if weights is None:
        return np.arange(n, dtype=np.int64)
    if not np.all(np.mod(weights, 1) == 0):
        raise ValueError(
            f"the {backend} backend cannot train with fractional sample_weight yet (its "
            "kernels take no weights, whole numbers repeat rows); use backend='numpy'"
        )
    if weights.sum() > MAX_WEIGHTED_ROWS:
        raise ValueError(
            f"sample_weight sums to {int(weights.sum())}: an epoch would visit more than "
            f"{MAX_WEIGHTED_ROWS} rows"
        )
    return np.repeat(np.arange(n, dtype=np.int64), weights.astype(np.int64))


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True
