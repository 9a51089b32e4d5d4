#!/usr/bin/env python
"""XOR with a 2-H-1 sigmoid network (MSE): which hidden sizes, rates and seeds learn it?

Every run is full-batch gradient descent on the four cases of the truth table. A run
has *learned* XOR when all four outputs are on the right side of 0.5. With 3 or more
hidden units every seed learns; with 2 some seeds get stuck in a local minimum.

    python scripts/xor_experiment.py --out runs/xor

Writes ``OUT/xor_loss_curves.png`` (loss per epoch, one panel per setting, learned runs
green and the rest red) and prints the success rate of each setting.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.datasets import xor
from fastmlp.pictures import curve_panels

# The four cases repeated this many times: with shuffle=False and batch_size=4 every
# step is one full-batch step, and one "epoch" of fit() is this many steps.
STEPS_PER_EPOCH = 50


def numbers(kind: Callable[[str], float]) -> Callable[[str], list[float]]:
    """An argparse type for comma-separated numbers."""

    def parse(text: str) -> list[float]:
        return [kind(v) for v in text.split(",")]

    return parse


def run(hidden: int, lr: float, seed: int, epochs: int, backend: str) -> tuple[list[float], bool]:
    """Train one network; return its loss per epoch and whether it learned XOR."""
    X, y = xor(STEPS_PER_EPOCH)
    model = MLP([2, hidden, 1], activation="sigmoid", output="sigmoid", seed=seed, backend=backend)
    history = model.fit(
        X, y, epochs=epochs, batch_size=4, lr=lr, shuffle=False, progress=False, threads=1
    )
    outputs = model.predict_proba(X[:4])[:, 0]
    learned = bool(np.all((outputs > 0.5) == (y[:4] > 0.5)))
    return history["loss"], learned


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the picture")
    parser.add_argument("--hidden", type=numbers(int), default=[2, 3, 4], help="e.g. 2,3,4")
    parser.add_argument("--lrs", type=numbers(float), default=[0.5, 1.0, 2.0], help="e.g. 0.5,1,2")
    parser.add_argument("--seeds", type=int, default=10, help="seeds 0..N-1 per setting")
    parser.add_argument(
        "--epochs", type=int, default=100, help=f"epochs of {STEPS_PER_EPOCH} full-batch steps"
    )
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy", "python"])
    args = parser.parse_args(argv)

    panels: dict[str, dict[str, list[list[float]]]] = {}
    print(f"XOR, 2-H-1 sigmoid, MSE, {args.epochs * STEPS_PER_EPOCH} full-batch steps per run")
    print(f"{'hidden':>6} {'lr':>5} {'learned':>9} {'rate':>6} {'median final loss':>18}")
    per_hidden: dict[int, list[bool]] = {}
    for hidden in args.hidden:
        for lr in args.lrs:
            curves: dict[str, list[list[float]]] = {"learned": [], "not learned": []}
            finals = []
            for seed in range(args.seeds):
                losses, learned = run(hidden, lr, seed, args.epochs, args.backend)
                curves["learned" if learned else "not learned"].append(losses)
                per_hidden.setdefault(hidden, []).append(learned)
                finals.append(losses[-1])
            k = len(curves["learned"])
            print(
                f"{hidden:>6} {lr:>5g} {k:>4}/{args.seeds:<4} {k / args.seeds:>6.0%} "
                f"{np.median(finals):>18.4f}"
            )
            panels[f"{hidden} hidden, lr {lr:g}: {k}/{args.seeds} learned"] = {
                label: runs for label, runs in curves.items() if runs
            }
    for hidden, results in per_hidden.items():
        print(f"{hidden} hidden units: {sum(results)}/{len(results)} runs learned XOR")
    path = curve_panels(
        panels,
        args.out / "xor_loss_curves.png",
        columns=len(args.lrs),
        colors={"learned": "tab:green", "not learned": "tab:red"},
        xlabel=f"epoch ({STEPS_PER_EPOCH} full-batch steps)",
        ylabel="MSE",
        logy=True,
        title="XOR: learned = all four cases on the right side of 0.5",
    )
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
