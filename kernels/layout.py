"""What every backend agrees on: the names of things and where each parameter lives.

All parameters of a network live in one flat float32 vector (as in llm.c's
``params_memory``), layer by layer, each layer's ``weight`` (out, in) row-major
followed by its ``bias`` (out,). One buffer means one optimizer loop, one
gradient buffer per thread and one reduction, whatever the depth.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ACTIVATIONS: tuple[str, ...] = ("sigmoid", "relu", "tanh", "silu", "identity")
OUTPUTS: tuple[str, ...] = ("softmax", "sigmoid", "identity")
LOSSES: tuple[str, ...] = ("cross_entropy", "mse")
OPTIMIZERS: tuple[str, ...] = ("sgd", "momentum", "adam")
INITS: tuple[str, ...] = ("he_uniform", "he_normal", "xavier_uniform", "xavier_normal")

# Pairs of output and loss that make a sensible classifier or regressor.
VALID_HEADS: tuple[tuple[str, str], ...] = (
    ("softmax", "cross_entropy"),
    ("sigmoid", "mse"),
    ("identity", "mse"),
)


@dataclass(frozen=True)
class Net:
    """The architecture of an MLP, the one thing network functions need besides arrays.

    ``sizes`` are the layer widths, input first (``(784, 16, 16, 10)``); every hidden
    layer uses ``activation``; the last layer uses ``output`` and is scored by ``loss``.
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    output: str = "softmax"
    loss: str = "cross_entropy"

    def __post_init__(self) -> None:
        sizes = tuple(int(s) for s in self.sizes)
        object.__setattr__(self, "sizes", sizes)
        if len(sizes) < 2 or any(s < 1 for s in sizes):
            raise ValueError(f"sizes must be at least two positive widths, got {sizes}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"unknown activation {self.activation!r}; choose one of {ACTIVATIONS}")
        if (self.output, self.loss) not in VALID_HEADS:
            raise ValueError(
                f"output {self.output!r} with loss {self.loss!r} is not supported; "
                f"choose one of {VALID_HEADS}"
            )

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return param_layout(self.sizes)[-1][2]


def param_layout(sizes: tuple[int, ...] | list[int]) -> list[tuple[int, int, int]]:
    """Offsets of each layer's parameters in the flat vector.

    Returns one ``(weight_offset, bias_offset, end)`` triple per layer; the weight of
    layer ``l`` is ``params[weight_offset:bias_offset].reshape(sizes[l+1], sizes[l])``
    and its bias ``params[bias_offset:end]``.
    """
    layout = []
    offset = 0
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:], strict=True):
        weight_offset = offset
        bias_offset = weight_offset + fan_out * fan_in
        end = bias_offset + fan_out
        layout.append((weight_offset, bias_offset, end))
        offset = end
    return layout


@dataclass(frozen=True)
class Optimizer:
    """Which update rule to apply and its constants (PyTorch's defaults)."""

    name: str = "sgd"
    momentum: float = 0.9
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        if self.name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.name!r}; choose one of {OPTIMIZERS}")


def optimizer_state(net: Net, name: str) -> dict[str, np.ndarray]:
    """Zeroed per-parameter state of optimizer ``name``, flat like the parameters."""
    n = net.n_params
    if name == "sgd":
        return {}
    if name == "momentum":
        return {"velocity": np.zeros(n, np.float32)}
    if name == "adam":
        return {"m": np.zeros(n, np.float32), "v": np.zeros(n, np.float32)}
    raise ValueError(f"unknown optimizer {name!r}; choose one of {OPTIMIZERS}")
