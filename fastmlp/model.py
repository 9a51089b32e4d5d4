"""The model: a few methods over a flat parameter vector; the arithmetic is the kernels'."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

import kernels
from kernels.layout import INITS, Net, param_layout

if TYPE_CHECKING:
    from fastmlp.training import History

_DEFAULT_LOSS = {"softmax": "cross_entropy", "sigmoid": "mse", "identity": "mse"}
# He keeps ReLU-like units alive; Xavier keeps sigmoid/tanh out of saturation at the start.
_DEFAULT_INIT = {
    "relu": "he_uniform",
    "silu": "he_uniform",
    "sigmoid": "xavier_uniform",
    "tanh": "xavier_uniform",
    "identity": "xavier_uniform",
}
_INIT_ALIASES = {"he": "he_uniform", "xavier": "xavier_uniform", "glorot": "xavier_uniform"}


class MLP:
    """A multilayer perceptron: dense layers, one activation for the hidden layers.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths, input first, e.g. ``[784, 16, 16, 10]``.
    activation : {"relu", "sigmoid", "tanh", "silu", "identity"}
        Activation of every hidden layer.
    output : {"softmax", "sigmoid", "identity"}
        Activation of the last layer.
    loss : {"cross_entropy", "mse"}, optional
        Defaults to cross-entropy after softmax and mean squared error otherwise.
    init : {"he", "xavier", "he_uniform", "he_normal", "xavier_uniform", "xavier_normal"}, optional
        Weight initialisation; He for ReLU/SiLU and Xavier for sigmoid/tanh by default.
    seed : int
        Seeds the initial weights and the shuffling in :meth:`fit`.
    backend : {"numba", "numpy", "python"}
        Which implementation of the kernels does the arithmetic.

    Examples
    --------
    >>> model = MLP([784, 16, 16, 10])
    >>> history = model.fit(train_x, train_y, epochs=10, batch_size=32, lr=0.1)
    >>> model.evaluate(test_x, test_y)["accuracy"]
    """

    def __init__(
        self,
        sizes: Sequence[int],
        activation: str = "relu",
        output: str = "softmax",
        loss: str | None = None,
        init: str | None = None,
        seed: int = 0,
        backend: str = "numba",
    ) -> None:
        if isinstance(sizes, str | bytes) or not isinstance(sizes, Sequence | np.ndarray):
            raise ValueError(
                f"sizes must be a list of layer widths like [784, 16, 10], got {sizes!r}"
            )
        if not all(isinstance(s, int | np.integer) and not isinstance(s, bool) for s in sizes):
            raise ValueError(f"sizes must be whole numbers, got {list(sizes)!r}")
        if output not in _DEFAULT_LOSS:
            raise ValueError(f"unknown output {output!r}; choose one of {tuple(_DEFAULT_LOSS)}")
        if activation not in _DEFAULT_INIT:
            raise ValueError(
                f"unknown activation {activation!r}; choose one of {tuple(_DEFAULT_INIT)}"
            )
        self.net = Net(
            tuple(int(s) for s in sizes), activation, output, loss or _DEFAULT_LOSS[output]
        )
        init = _INIT_ALIASES.get(init, init) if init else _DEFAULT_INIT[activation]
        if init not in INITS:
            raise ValueError(f"unknown init {init!r}; choose one of he, xavier, {', '.join(INITS)}")
        if not isinstance(seed, int | np.integer) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
        self.init = init
        self.seed = int(seed)
        self.backend = backend
        self.kernels = kernels.backend(backend)
        self.params = np.zeros(self.net.n_params, np.float32)
        self.kernels.init_params(self.params, self.net, init, self.seed)
        self.history = None  # the History of the last fit, kept for the model file's metadata

    # --- the architecture, read back --------------------------------------------------

    @property
    def sizes(self) -> tuple[int, ...]:
        return self.net.sizes

    @property
    def activation(self) -> str:
        return self.net.activation

    @property
    def output(self) -> str:
        return self.net.output

    @property
    def loss(self) -> str:
        return self.net.loss

    def __repr__(self) -> str:
        return (
            f"MLP({list(self.sizes)}, activation={self.activation!r}, output={self.output!r}, "
            f"loss={self.loss!r}, init={self.init!r}, seed={self.seed}, backend={self.backend!r})"
        )

    # --- inputs --------------------------------------------------------------------------

    def prepare_inputs(self, X: Any) -> np.ndarray:
        """Rows of features the kernels can read: uint8 stays uint8 (read as x/255), the rest float32."""
        X = np.asarray(X)
        if X.dtype == np.bool_ or not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"inputs must be numeric, got dtype {X.dtype}")
        if X.ndim == 1 and self.sizes[0] == X.shape[0]:
            X = X[None, :]
        if X.ndim < 2:
            raise ValueError(f"inputs must have one row per example, got shape {X.shape}")
        if X.shape[0] == 0:
            raise ValueError("inputs are empty: no examples given")
        X = X.reshape(X.shape[0], -1)  # images (N, 28, 28) become rows of 784
        if X.shape[1] != self.sizes[0]:
            raise ValueError(
                f"inputs have {X.shape[1]} features per example but the model's first layer "
                f"takes {self.sizes[0]} (sizes {list(self.sizes)})"
            )
        if X.dtype != np.uint8:
            X = X.astype(np.float32, copy=False)
        return np.ascontiguousarray(X)

    def prepare_targets(self, y: Any, n_rows: int) -> np.ndarray:
        """Class ids (int32) for cross-entropy, float32 (N, outputs) targets for MSE."""
        y = np.asarray(y)
        n_out = self.sizes[-1]
        if y.shape[0] != n_rows:
            raise ValueError(f"got {n_rows} inputs but {y.shape[0]} labels")
        if self.loss == "cross_entropy":
            if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or _all_whole(y)):
                raise ValueError(
                    f"labels must be a 1-D array of class ids, got shape {y.shape} {y.dtype}"
                )
            labels = y.astype(np.int32)
            if labels.size and (labels.min() < 0 or labels.max() >= n_out):
                raise ValueError(
                    f"labels must lie in 0..{n_out - 1} for {n_out} outputs, "
                    f"got {int(labels.min())}..{int(labels.max())}"
                )
            return labels
        if y.ndim == 1 and n_out == 1:
            return np.ascontiguousarray(y.astype(np.float32).reshape(-1, 1))
        if y.ndim == 1:  # class ids for an MSE classifier: one-hot targets
            if not _all_whole(y) or y.min() < 0 or y.max() >= n_out:
                raise ValueError(f"class ids must lie in 0..{n_out - 1}, got {y.min()}..{y.max()}")
            return np.ascontiguousarray(np.eye(n_out, dtype=np.float32)[y.astype(np.int64)])
        if y.ndim != 2 or y.shape[1] != n_out:
            raise ValueError(f"targets must have shape (N, {n_out}), got {y.shape}")
        return np.ascontiguousarray(y, dtype=np.float32)

    # --- what a trained model does --------------------------------------------------------

    def fit(self, X: Any, y: Any, **options: Any) -> History:
        """Train on ``(X, y)`` and return the per-epoch :class:`~fastmlp.training.History`.

        The options (``epochs``, ``batch_size``, ``lr``, ``optimizer``, ...) are those of
        :func:`fastmlp.training.fit`; the history is also kept as ``model.history``.
        """
        from fastmlp.training import fit

        return fit(self, X, y, **options)

    def feedforward(self, X: Any) -> np.ndarray:
        """Outputs of the last layer (probabilities for softmax), one row per example."""
        return self.kernels.forward(self.params, self.net, self.prepare_inputs(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax) or output activations (sigmoid), shape (N, outputs)."""
        return self.feedforward(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class ids; for one sigmoid output, 1 where the output exceeds 0.5."""
        outputs = self.feedforward(X)
        return outputs if self.output == "identity" else _classes(outputs)

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]:
        """Mean loss, accuracy and confusion matrix (rows: true class, columns: predicted)."""
        inputs = self.prepare_inputs(X)
        targets = self.prepare_targets(y, inputs.shape[0])
        outputs = self.kernels.forward(self.params, self.net, inputs)
        loss = _loss_from_outputs(outputs, targets, self.loss)
        if self.output == "identity":
            return {"loss": loss, "accuracy": float("nan"), "confusion_matrix": None}
        predicted = _classes(outputs)
        true = targets if targets.ndim == 1 else _classes(targets)
        n_classes = max(2, outputs.shape[1])  # one sigmoid output tells two classes apart
        confusion = np.zeros((n_classes, n_classes), np.int64)
        np.add.at(confusion, (true, predicted), 1)
        return {
            "loss": loss,
            "accuracy": float((predicted == true).mean()),
            "confusion_matrix": confusion,
        }

    def loss_and_grads(self, X: Any, y: Any) -> tuple[float, dict[str, np.ndarray]]:
        """Mean loss over ``(X, y)`` and its gradient, keyed and shaped like :meth:`state_dict`."""
        inputs = self.prepare_inputs(X)
        targets = self.prepare_targets(y, inputs.shape[0])
        loss, grads = self.kernels.loss_and_grads(self.params, self.net, inputs, targets)
        return float(loss), self._unflatten(grads, None)

    # --- parameters as PyTorch names them ---------------------------------------------------

    def layer_keys(self, layer_names: Sequence[str] | None = None) -> list[str]:
        """Key prefix of each dense layer: nn.Sequential's indices ("0", "2", ...) by default."""
        if layer_names is None:
            return [str(2 * i) for i in range(self.net.n_layers)]
        names = [str(n) for n in layer_names]
        if len(names) != self.net.n_layers or len(set(names)) != len(names):
            raise ValueError(f"give {self.net.n_layers} distinct layer names, got {names}")
        return names

    def _unflatten(
        self, flat: np.ndarray, layer_names: Sequence[str] | None
    ) -> dict[str, np.ndarray]:
        tensors = {}
        for key, (fan_in, fan_out), (w0, b0, end) in zip(
            self.layer_keys(layer_names),
            zip(self.sizes[:-1], self.sizes[1:], strict=True),
            param_layout(self.sizes),
            strict=True,
        ):
            tensors[f"{key}.weight"] = flat[w0:b0].reshape(fan_out, fan_in)
            tensors[f"{key}.bias"] = flat[b0:end]
        return tensors

    def state_dict(self, layer_names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Copies of the parameters, named as ``nn.Sequential(Linear, Act, Linear, ...)`` names them.

        Keys are ``"0.weight"``, ``"0.bias"``, ``"2.weight"``, ... with weights (out, in);
        ``layer_names`` (one per dense layer) replaces the indices, e.g. ``("layer1", "layer2")``.
        """
        return {k: v.copy() for k, v in self._unflatten(self.params, layer_names).items()}

    def load_state_dict(
        self, state: Mapping[str, Any], layer_names: Sequence[str] | None = None
    ) -> None:
        """Copy parameters in, after checking every name and shape; say what does not match."""
        views = self._unflatten(self.params, layer_names)
        missing = [k for k in views if k not in state]
        unexpected = [k for k in state if k not in views]
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unexpected:
            problems.append(f"unexpected {', '.join(unexpected)}")
        for key, view in views.items():
            if key in state and tuple(np.shape(state[key])) != view.shape:
                problems.append(
                    f"{key} has shape {tuple(np.shape(state[key]))}, expected {view.shape}"
                )
        if problems:
            raise ValueError(f"state dict does not fit {self!r}: " + "; ".join(problems))
        values = {k: np.asarray(state[k], dtype=np.float32) for k in views}
        if not all(np.isfinite(v).all() for v in values.values()):
            raise ValueError("state dict holds NaN or infinite values")
        for key, view in views.items():
            view[...] = values[key]

    # --- model files -------------------------------------------------------------------------

    def save(
        self,
        path: str | os.PathLike,
        *,
        layer_names: Sequence[str] | None = None,
        overwrite: bool = True,
    ) -> None:
        """Write a ``.safetensors`` file atomically; see :mod:`fastmlp.modelfile`.

        With ``overwrite=False`` an existing file is never replaced (``FileExistsError``).
        """
        from fastmlp.modelfile import architecture_metadata, write_model_file

        history = None if self.history is None else self.history.to_dict()
        metadata = architecture_metadata(
            self.sizes, self.activation, self.output, self.loss, self.init, self.seed,
            self.layer_keys(layer_names), history,
        )  # fmt: skip
        write_model_file(path, self.state_dict(layer_names), metadata, overwrite=overwrite)

    @classmethod
    def load(cls, path: str | os.PathLike, *, backend: str = "numba") -> MLP:
        """Rebuild a model saved by :meth:`save`; a bad file raises ``ModelFileError``."""
        from fastmlp.modelfile import ModelFileError, read_architecture, read_model_file

        tensors, metadata = read_model_file(path)
        # Checked against the tensors present before the model allocates anything.
        arch = read_architecture(path, tensors, metadata)
        try:
            model = cls(arch.sizes, arch.activation, arch.output, arch.loss, arch.init,
                        arch.seed, backend)  # fmt: skip
            names = None if list(arch.layer_names) == model.layer_keys() else arch.layer_names
            model.load_state_dict(tensors, layer_names=names)
        except ValueError as exc:
            if str(exc).startswith("unknown backend"):
                raise
            raise ModelFileError(f"{path}: {exc}") from None
        return model


def _classes(rows: np.ndarray) -> np.ndarray:
    """Class id of each row: the largest column, or for one column, whether it exceeds 0.5."""
    if rows.shape[1] == 1:
        return (rows[:, 0] > 0.5).astype(np.int64)
    return rows.argmax(axis=1)


def _all_whole(y: np.ndarray) -> bool:
    return bool(np.issubdtype(y.dtype, np.number) and np.all(np.mod(y, 1) == 0))


def _loss_from_outputs(outputs: np.ndarray, targets: np.ndarray, loss: str) -> float:
    """Mean loss from the last layer's outputs (evaluation only, not a training kernel)."""
    if loss == "mse":
        return float(np.mean((outputs.astype(np.float64) - targets) ** 2))
    # The probabilities are clipped: a confident mistake costs log(1e-12)-ish, not infinity.
    picked = outputs[np.arange(len(targets)), targets].astype(np.float64)
    return float(-np.mean(np.log(np.maximum(picked, 1e-12))))
