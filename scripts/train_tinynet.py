#!/usr/bin/env python
"""TinyNet: a 4-3-2 network tells horizontal from vertical bars in noisy 2x2 images.

Two sigmoid outputs (horizontal, vertical) trained with MSE and plain SGD, lr 0.1,
200 epochs, by default on the whole data set at once (one step per epoch, as in the
PyTorch exercise this reproduces). The model file names its tensors ``layer1.*`` and
``layer2.*``, so it loads unchanged into this PyTorch module::

    class TinyNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.layer1 = nn.Linear(4, 3)
            self.layer2 = nn.Linear(3, 2)

        def forward(self, x):
            return torch.sigmoid(self.layer2(torch.sigmoid(self.layer1(x))))  # or relu

    model.load_state_dict(safetensors.torch.load_file("model.safetensors"))

    python scripts/train_tinynet.py --out runs/tinynet [--activation relu]

Full batch at lr 0.1 is only 200 steps: the sigmoid network barely leaves the plateau
at 0.25 (the loss of answering 0.5 everywhere), and the ReLU one hardly does better.
``--batch-size 32`` makes it 25,000 steps, where the activation makes the difference.
``--compare`` trains all four (full batch and batch 32, sigmoid and ReLU), prints them
side by side and draws their loss curves into one picture, ``tinynet_compare.png``::

    python scripts/train_tinynet.py --out runs/tinynet --compare
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.datasets import BAR_PATTERNS, bars
from fastmlp.pictures import curve_panels, training_curves

LAYER_NAMES = ("layer1", "layer2")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the model and picture")
    parser.add_argument("--activation", choices=["sigmoid", "relu"], default="sigmoid")
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument(
        "--batch-size", type=int, default=None, help="examples per step (default: all of them)"
    )
    parser.add_argument("--n-per-pattern", type=int, default=1000, help="noisy copies of each bar")
    parser.add_argument("--noise", type=float, default=0.3, help="std of the pixel noise")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy", "python"])
    parser.add_argument(
        "--compare",
        action="store_true",
        help="train sigmoid and ReLU, full batch and --compare-batch-size, side by side",
    )
    parser.add_argument("--compare-batch-size", type=int, default=32)
    args = parser.parse_args(argv)

    X, Y = bars(args.n_per_pattern, noise=args.noise, seed=args.seed)
    if args.compare:
        return compare(args, X, Y)
    batch_size = args.batch_size or len(X)
    print(
        f"TinyNet 4-3-2 ({args.activation} hidden, sigmoid outputs, MSE) on {len(X)} noisy bars "
        f"(noise {args.noise:g}): SGD lr {args.lr:g}, batch {batch_size}, {args.epochs} epochs"
    )
    model, history, scores = train(args, X, Y, args.activation, batch_size)
    first = history.epochs[0]["loss"]
    print(f"loss: epoch 1 {first:.4f} -> final {scores['loss']:.4f} (MSE on the training data)")
    print(f"bars told apart (larger output = the right kind): {scores['accuracy']:.2%}")

    clean = np.array([pixels for pixels, _ in BAR_PATTERNS.values()], np.float32)
    outputs = model.predict_proba(clean)
    print("outputs (horizontal, vertical) on the four clean patterns:")
    for name, row in zip(BAR_PATTERNS, outputs, strict=True):
        print(f"  {name:<18} {row[0]:.3f} {row[1]:.3f}")

    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.safetensors"
    model.save(model_path, layer_names=LAYER_NAMES)
    curves = training_curves(history, args.out / "tinynet_curves.png", title="TinyNet")
    print(f"wrote {model_path} (tensors {', '.join(sorted(model.state_dict(LAYER_NAMES)))})")
    print(f"wrote {curves}")
    return 0


def train(args: argparse.Namespace, X: np.ndarray, Y: np.ndarray, activation: str, batch_size: int):
    """One TinyNet trained with the script's recipe; returns (model, history, scores)."""
    model = MLP(
        [4, 3, 2], activation=activation, output="sigmoid", seed=args.seed, backend=args.backend
    )
    history = model.fit(
        X, Y, epochs=args.epochs, batch_size=batch_size, lr=args.lr, optimizer="sgd",
        progress=False,
    )  # fmt: skip
    return model, history, model.evaluate(X, Y)


def compare(args: argparse.Namespace, X: np.ndarray, Y: np.ndarray) -> int:
    """The seed's recipe (full batch) and a mini-batch one, each with sigmoid and ReLU."""
    recipes = {
        f"full batch ({len(X)}): {args.epochs} steps": len(X),
        f"batch {args.compare_batch_size}: "
        f"{args.epochs * -(-len(X) // args.compare_batch_size):,} steps": args.compare_batch_size,
    }
    print(
        f"TinyNet 4-3-2 on {len(X)} noisy bars (noise {args.noise:g}), sigmoid outputs, MSE, "
        f"SGD lr {args.lr:g}, {args.epochs} epochs, seed {args.seed}"
    )
    print(f"{'recipe':<34} {'hidden':<8} {'final loss':>10} {'bars told apart':>16}")
    panels: dict[str, dict[str, list[float]]] = {}
    for recipe, batch_size in recipes.items():
        panels[recipe] = {}
        for activation in ("sigmoid", "relu"):
            _, history, scores = train(args, X, Y, activation, batch_size)
            loss, accuracy = scores["loss"], scores["accuracy"]
            print(f"{recipe:<34} {activation:<8} {loss:>10.4f} {accuracy:>16.2%}")
            label = f"{activation}: loss {loss:.4f}, {accuracy:.1%} told apart"
            panels[recipe][label] = [e["loss"] for e in history.epochs]
    args.out.mkdir(parents=True, exist_ok=True)
    picture = curve_panels(
        panels,
        args.out / "tinynet_compare.png",
        columns=2,
        ylabel="training loss (MSE)",
        title="TinyNet: sigmoid vs ReLU hidden units, the seed's full-batch recipe and batch "
        f"{args.compare_batch_size}",
    )
    print(f"wrote {picture}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
