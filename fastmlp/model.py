"""The model: a few methods over a flat parameter vector; the arithmetic is the kernels'."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

import kernels
from fastmlp import validation as check
from fastmlp.arrays import as_inputs, as_targets, non_finite_row
from fastmlp.datasets import holdout_indices
from fastmlp.sample_weights import as_sample_weight, require_sample_weight
from fastmlp.training import EarlyStopping, History, TrainingOptions, train
from kernels.layout import INITS, Net, param_layout

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
        check.choice("output", output, tuple(_DEFAULT_LOSS))
        check.choice("activation", activation, tuple(_DEFAULT_INIT))
        self.net = Net(
            tuple(int(s) for s in sizes), activation, output, loss or _DEFAULT_LOSS[output]
        )
        if init is None:
            init = _DEFAULT_INIT[activation]
        init = _INIT_ALIASES.get(check.choice("init", init, (*_INIT_ALIASES, *INITS)), init)
        self.init = init
        self.seed = check.seed("seed", seed)
        self.backend = backend
        self.kernels = kernels.backend(backend)
        self.params = np.zeros(self.net.n_params, np.float32)
        self.kernels.init_params(self.params, self.net, init, self.seed)
        self.history: History | None = None  # the last fit's, kept in the model file too

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
        """Rows of features the kernels can read: uint8 stays uint8 (read as x/255), the rest
        float32; see :func:`fastmlp.arrays.as_inputs`."""
        return as_inputs(X, self.sizes[0])

    def prepare_targets(self, y: Any, n_rows: int) -> np.ndarray:
        """Class ids (int32) for cross-entropy, float32 (N, outputs) targets for MSE; see
        :func:`fastmlp.arrays.as_targets`."""
        return as_targets(y, n_rows, self.sizes[-1], self.loss)

    # --- what a trained model does --------------------------------------------------------

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        epochs: int = TrainingOptions.epochs,
        batch_size: int = TrainingOptions.batch_size,
        lr: float = TrainingOptions.lr,
        optimizer: str = TrainingOptions.optimizer,
        momentum: float = TrainingOptions.momentum,
        weight_decay: float = TrainingOptions.weight_decay,
        lr_schedule: str | None = TrainingOptions.lr_schedule,
        validation_data: tuple[Any, Any] | None = None,
        validation_split: float | int | None = TrainingOptions.validation_split,
        early_stopping: EarlyStopping | int | dict[str, Any] | None = None,
        shuffle: bool = TrainingOptions.shuffle,
        progress: bool = TrainingOptions.progress,
        threads: int | None = TrainingOptions.threads,
        augment: str | None = TrainingOptions.augment,
        sample_weight: Any = None,
    ) -> History:
        """Train in place with mini-batch gradient descent; see :mod:`fastmlp.training`.

        Parameters
        ----------
        X : array_like
            Inputs, one row per example: uint8 pixels (read as x/255) or finite numbers;
            images are flattened.
        y : array_like
            Class ids (N,), or float targets (N, outputs) for an MSE model.
        epochs : int
            Passes over the data.
        batch_size : int
            Examples per step (the last batch of an epoch may be smaller).
        lr : float
            Learning rate (the peak rate under a schedule).
        optimizer : {"sgd", "momentum", "adam"}
            Update rule.
        momentum : float
            In [0, 1): the momentum of ``"momentum"``.
        weight_decay : float
            L2 regularisation strength lambda, added to the gradient as ``lambda * w``.
        lr_schedule : {None, "step", "cosine", "onecycle"}
            See :func:`fastmlp.schedules.learning_rates`.
        validation_data : (X_val, y_val), optional
            Scored after every epoch (``val_loss``, ``val_accuracy``).
        validation_split : float or int, optional
            Instead of ``validation_data``: hold out this fraction (or number) of the
            rows of ``(X, y)``, never trained on and scored after every epoch. The rows
            are drawn at random, seeded by ``seed``, and every class keeps its share
            (see :func:`fastmlp.datasets.holdout_indices`).
        early_stopping : EarlyStopping or int or dict, optional
            Patience (and ``min_delta``) on the validation loss; needs ``validation_data``.
            The best epoch's parameters are restored when it stops training.
        shuffle : bool
            Visit the examples in a new order each epoch, seeded by ``seed``.
        progress : bool
            A progress bar on a terminal and one summary line per epoch on stdout.
        threads : int, optional
            Threads the kernels may use (default: every core, capped by NUMBA_NUM_THREADS).
        augment : {None, "shift", "affine", "elastic", "affine+elastic"}
            Train on randomly distorted copies of square uint8 images, made a chunk at a
            time (no augmented data set is stored), seeded by ``seed`` and the epoch; see
            :mod:`kernels.augment_reference`.
        sample_weight : array_like, optional
            A weight >= 0 per row of ``X`` (finite, not all zero): each batch's loss and
            gradient become the weighted mean over its rows (scikit-learn's meaning), and
            ``validation_split`` splits the weights with the rows. Needs a backend whose
            kernels take weights (numpy and python; see :mod:`fastmlp.sample_weights`).

        Returns
        -------
        History
            Per-epoch metrics and why training stopped, also kept as ``model.history``.
            Divergence (a loss of NaN or inf) stops training, keeps the last good
            parameters and warns; Ctrl-C stops and keeps the last completed epoch.

        Raises
        ------
        ValueError
            For a bad option, or data that does not fit the model (wrong shape, NaN or
            infinite inputs, labels out of range), before any training.
        """
        options = TrainingOptions(
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            optimizer=optimizer,
            momentum=momentum,
            weight_decay=weight_decay,
            lr_schedule=lr_schedule,
            shuffle=shuffle,
            progress=progress,
            threads=threads,
            validation_split=validation_split,
            augment=augment,
        )
        inputs = self.prepare_inputs(X)
        targets = self.prepare_targets(y, len(inputs))
        weights = None
        if sample_weight is not None:
            weights = as_sample_weight(sample_weight, len(inputs))
            require_sample_weight(self.kernels, self.backend)
        validation = None
        if options.validation_split is not None:
            if validation_data is not None:
                raise ValueError("give validation_data or validation_split, not both")
            classes = targets if targets.ndim == 1 else _classes(targets)
            rest, held = holdout_indices(
                len(inputs), options.validation_split, seed=self.seed, classes=classes
            )
            validation = inputs[held], targets[held]
            inputs, targets = inputs[rest], targets[rest]
            if weights is not None:
                what = "sample_weight of the rows left after validation_split"
                weights = as_sample_weight(weights[rest], len(rest), what)
        elif validation_data is not None:
            if not isinstance(validation_data, tuple | list) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            # Checked and converted once: evaluating every epoch then converts nothing.
            val_inputs = self.prepare_inputs(validation_data[0])
            validation = (val_inputs, self.prepare_targets(validation_data[1], len(val_inputs)))
        self.history = train(
            self, inputs, targets, options, validation, early_stopping, sample_weight=weights
        )
        return self.history

    def feedforward(self, X: Any) -> np.ndarray:
        """Outputs of the last layer (probabilities for softmax), one row per example."""
        return self._outputs(X)[0]

    def _outputs(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(outputs, inputs as the kernels read them); NaN and infinity checked by the numba
        backend on its way through a float input (``forward_checked``), else here first."""
        checked = getattr(self.kernels, "forward_checked", None)
        inputs = as_inputs(X, self.sizes[0], finite=checked is None)
        if checked is None:
            return self.kernels.forward(self.params, self.net, inputs), inputs
        outputs, bad = checked(self.params, self.net, inputs)
        non_finite_row(inputs, bad)
        return outputs, inputs

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities (softmax) or output activations (sigmoid), shape (N, outputs)."""
        return self.feedforward(X)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted class ids; for one sigmoid output, 1 where the output exceeds 0.5."""
        outputs = self.feedforward(X)
        return outputs if self.output == "identity" else _classes(outputs)

    def evaluate(self, X: Any, y: Any) -> dict[str, Any]:
        """Mean loss, accuracy and confusion matrix (rows: true class, columns: predicted)."""
        outputs, inputs = self._outputs(X)
        targets = self.prepare_targets(y, inputs.shape[0])
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


def _loss_from_outputs(outputs: np.ndarray, targets: np.ndarray, loss: str) -> float:
    """Mean loss from the last layer's outputs (evaluation only, not a training kernel)."""
    if loss == "mse":
        return float(np.mean((outputs.astype(np.float64) - targets) ** 2))
    # The probabilities are clipped: a confident mistake costs log(1e-12)-ish, not infinity.
    picked = outputs[np.arange(len(targets)), targets].astype(np.float64)
    return float(-np.mean(np.log(np.maximum(picked, 1e-12))))
