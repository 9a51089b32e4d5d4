#!/usr/bin/env python
"""Tuning curves on the moons: vary one setting at a time, overlay the training-loss curves.

Four panels around one base recipe (2-H-2 tanh network, softmax, SGD with mini-batches):
the number of training samples, the number of hidden units, the L2 regularisation
strength lambda (``weight_decay``) and the learning rate. Every run takes the same
number of optimizer steps, and the curves (the mean loss of each epoch's batches) are
drawn against steps, so runs on few samples (many short epochs) and on many samples
(few long ones) compare fairly. The classic picture: more data steadies training, more
units fit better, more regularisation raises the training loss, a smaller rate is
slower but smoother.

    python scripts/tuning_curves.py --out runs/tuning

Writes ``OUT/tuning_curves.png`` and prints each run's final training loss.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.datasets import moons
from fastmlp.pictures import curve_panels

BASE = {"samples": 400, "hidden": 8, "weight_decay": 0.0, "lr": 0.3}
VARIED = {
    "samples": [25, 100, 400, 1600],
    "hidden": [1, 2, 4, 16],
    "weight_decay": [0.0, 0.003, 0.03, 0.1],
    "lr": [0.01, 0.1, 1.0, 3.0],
}
TITLES = {
    "samples": "training samples",
    "hidden": "hidden units",
    "weight_decay": "regularisation lambda",
    "lr": "learning rate",
}


def run(
    samples: int, hidden: int, weight_decay: float, lr: float, *,
    steps: int, batch_size: int, noise: float, seed: int, backend: str,
) -> dict[str, np.ndarray]:  # fmt: skip
    """One run of the base recipe with these settings: training loss per epoch vs steps."""
    X, y = moons(samples, noise=noise, seed=seed)
    steps_per_epoch = math.ceil(samples / batch_size)
    epochs = max(1, round(steps / steps_per_epoch))
    model = MLP([2, hidden, 2], activation="tanh", seed=seed, backend=backend)
    history = model.fit(
        X, y, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=weight_decay,
        progress=False,
    )  # fmt: skip
    losses = np.asarray(history["loss"])
    return {"x": steps_per_epoch * np.arange(1, len(losses) + 1), "y": losses}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the picture")
    parser.add_argument("--steps", type=int, default=4000, help="optimizer steps per run")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--noise", type=float, default=0.2, help="noise of the moons")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy", "python"])
    args = parser.parse_args(argv)

    base = ", ".join(f"{TITLES[k]} {v:g}" for k, v in BASE.items())
    print(f"moons (noise {args.noise:g}), 2-H-2 tanh, SGD batch {args.batch_size}; base: {base}")
    panels: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for setting, values in VARIED.items():
        curves = {}
        for value in values:
            settings = BASE | {setting: value}
            curve = run(
                **settings, steps=args.steps, batch_size=args.batch_size, noise=args.noise,
                seed=args.seed, backend=args.backend,
            )  # fmt: skip
            # How much the loss still wobbles over the last fifth of the run: how steady
            # training is by then.
            tail = curve["y"][curve["x"] > 0.8 * curve["x"][-1]]
            print(
                f"{TITLES[setting]:<22} {value:>7g}: final loss {curve['y'][-1]:.4f}, "
                f"wobble (std over the last 20% of steps) {tail.std():.4f}"
            )
            curves[f"{value:g}"] = curve
        panels[f"{TITLES[setting]} (others at base)"] = curves
    path = curve_panels(
        panels,
        args.out / "tuning_curves.png",
        columns=2,
        xlabel="optimizer steps",
        ylabel="training loss (cross-entropy)",
        logy=True,
        title="moons: one setting varied at a time",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
