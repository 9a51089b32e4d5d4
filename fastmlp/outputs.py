"""Where a training run's outputs go, decided before it starts and kept safe after it ends.

The command line's policy for the user's files (see the README, "What fastmlp promises
about your files"): a default name never replaces a file, every output path is checked
and told apart from the others before training, and the model of an interrupted or
diverged run replaces nothing unless asked.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastmlp.files import free_name, same_file, write_target

#: Where `fastmlp train` saves without --save: the architecture, activation and
#: initialisation name the file, so the README's two recipes do not collide, and a name
#: already taken gets the next number (-2, -3, ...): a default save never replaces a file.
DEFAULT_SAVE = Path("runs") / "mnist-{arch}-{activation}-{init}.safetensors"
# Initialisations by their short names, as the default save name spells them.
_SHORT_INIT = {"he_uniform": "he", "xavier_uniform": "xavier"}


def default_save_path(model: Any) -> Path:
    """runs/mnist-ARCH-ACTIVATION-INIT.safetensors, or its first free numbered variant."""
    name = str(DEFAULT_SAVE).format(
        arch="-".join(map(str, model.sizes)),
        activation=model.activation,
        init=_SHORT_INIT.get(model.init, model.init),
    )
    return free_name(Path(name))


def check_paths(named: dict[str, Path | None]) -> None:
    """Refuse, before training, outputs that cannot be written or that name one file twice."""
    named = {flag: path for flag, path in named.items() if path is not None}
    for flag, path in named.items():
        if flag != "--resume":
            write_target(path)
    flags = list(named)
    for i, first in enumerate(flags):
        for second in flags[i + 1 :]:
            if same_file(named[first], named[second]):
                raise ValueError(
                    f"{first} and {second} name the same file ({named[second]}); "
                    "give each its own path"
                )


def save_run(
    model: Any, history: Any, save_path: Path, *, explicit: bool, force: bool
) -> tuple[Path | None, str]:
    """Save the trained model where it may go; returns the path (or None) and the line to print.

    A default name is never replaced (a taken one gets the next number). An explicit
    --save replaces its file, except with the model of an interrupted or diverged run,
    which replaces nothing without --force and goes beside it instead. A run that
    completed no epoch saves nothing.
    """
    done = len(history.epochs)
    if done == 0:
        return None, "no epoch completed: no model saved"
    partial = history.stop_reason in ("interrupted", "diverged")
    existed = os.path.lexists(save_path)
    if partial and existed and not force:
        beside = free_name(save_path.with_name(f"{save_path.stem}-partial{save_path.suffix}"))
        model.save(beside, overwrite=False)
        return beside, (
            f"{save_path} already holds a model and was kept; the model of this "
            f"{history.stop_reason} run ({done} epoch(s)) was saved to {beside} "
            "(--force replaces instead)"
        )
    if explicit or force:
        model.save(save_path)
        return save_path, f"model saved to {save_path}" + (
            " (replacing the file that was there)" if existed else ""
        )
    while True:  # another run may take the default name while this one trains
        try:
            model.save(save_path, overwrite=False)
            return save_path, f"model saved to {save_path}"
        except FileExistsError:
            save_path = free_name(save_path)
