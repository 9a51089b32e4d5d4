"""Model files: safetensors (never pickle), written atomically, readable by PyTorch as they are.

The tensors are named as ``nn.Sequential(Linear, Act, Linear, ...)`` names them (or by
the layer names given at save time); the architecture and the training record travel
as strings in the safetensors header's ``__metadata__``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from fastmlp.files import write_atomically

if TYPE_CHECKING:
    from fastmlp.model import MLP

FORMAT = "fastmlp-mlp"
FORMAT_VERSION = "1"


class ModelFileError(ValueError):
    """A model file that cannot be read back: truncated, foreign, or not matching itself."""


def save_model(
    model: MLP, path: str | os.PathLike, *, layer_names: Sequence[str] | None = None
) -> Path:
    """Write ``model`` to ``path`` as safetensors; a crash mid-write leaves any old file intact."""
    from safetensors.numpy import save

    from fastmlp import __version__

    path = Path(path)
    tensors = {k: np.ascontiguousarray(v) for k, v in model.state_dict(layer_names).items()}
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "fastmlp_version": __version__,
        "sizes": json.dumps(list(model.sizes)),
        "activation": model.activation,
        "output": model.output,
        "loss": model.loss,
        "init": model.init,
        "seed": str(model.seed),
        "layer_names": json.dumps(model.layer_keys(layer_names)),
    }
    if model.history is not None:
        metadata["training"] = json.dumps(model.history.to_dict())
    write_atomically(path, save(tensors, metadata=metadata))
    return path


def read_model_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The tensors and the header metadata of a safetensors file, or a ModelFileError."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    path = Path(path)
    data = path.read_bytes()  # OSError for a missing file or a folder, as for any file
    try:
        tensors = load(data)
        header_size = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_size])
    except (SafetensorError, ValueError, UnicodeDecodeError) as exc:
        raise ModelFileError(
            f"{path}: not a readable safetensors file (truncated or foreign): {exc}"
        ) from None
    return tensors, header.get("__metadata__") or {}


def load_model(path: str | os.PathLike, *, backend: str = "numba") -> MLP:
    """Rebuild the model saved in ``path``; every problem is a ModelFileError naming it."""
    from fastmlp.model import MLP

    tensors, metadata = read_model_file(path)
    if metadata.get("format") != FORMAT:
        raise ModelFileError(
            f"{path}: a safetensors file, but not a fastmlp model (its header has no "
            f"'format': '{FORMAT}' metadata)"
        )
    try:
        sizes = json.loads(metadata["sizes"])
        layer_names = json.loads(metadata["layer_names"])
        model = MLP(
            sizes,
            activation=metadata["activation"],
            output=metadata["output"],
            loss=metadata["loss"],
            init=metadata.get("init"),
            seed=int(metadata.get("seed", 0)),
            backend=backend,
        )
        names = None if layer_names == model.layer_keys() else layer_names
        model.load_state_dict(tensors, layer_names=names)
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ModelFileError(
            f"{path}: fastmlp metadata is incomplete or malformed ({exc!r})"
        ) from None
    except ValueError as exc:
        if str(exc).startswith("unknown backend"):
            raise
        raise ModelFileError(f"{path}: {exc}") from None
    return model
