#!/usr/bin/env python
"""The four MNIST pictures of a saved model: sample digits, first-layer weights, mistakes, confusion.

    FASTMLP_DATA=/path/to/mnist python scripts/mnist_pictures.py --model runs/m.safetensors --out runs/pics

Writes into OUT: ``digits.png`` (test digits with their labels), ``weights.png`` (what
each first-layer hidden unit looks at), ``misclassified.png`` (the model's most
confident mistakes on the test set) and ``confusion.png``; plus ``curves.png`` when the
model file carries its training history. Prints the test accuracy and loss.

``--augment`` (with or without ``--model``) also writes ``augmented.png``: training
digits and their shift, affine and elastic distortions, as ``fit(augment=...)`` makes them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from fastmlp import MLP, load_mnist, pictures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="a .safetensors model file")
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--data-dir", help="MNIST folder (default: $FASTMLP_DATA, else the cache)")
    parser.add_argument("--count", type=int, default=64, help="digits per grid")
    parser.add_argument("--no-download", action="store_true", help="fail rather than download")
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy", "python"])
    parser.add_argument("--augment", action="store_true", help="also draw augmented.png")
    parser.add_argument("--seed", type=int, default=0, help="seed of the distortions")
    args = parser.parse_args(argv)
    if args.model is None and not args.augment:
        parser.error("give --model, --augment or both")
    if args.augment:
        train_x = load_mnist(args.data_dir, download=not args.no_download)[0]
        path = pictures.augmented_digits(train_x, args.out / "augmented.png", seed=args.seed)
        print(f"wrote {path}")
        if args.model is None:
            return 0

    model = MLP.load(args.model, backend=args.backend)
    _, _, test_x, test_y = load_mnist(args.data_dir, download=not args.no_download)
    scores = model.evaluate(test_x, test_y)
    arch = "-".join(map(str, model.sizes))
    print(f"{args.model}: {arch} {model.activation}")
    print(f"test accuracy {scores['accuracy']:.2%}, loss {scores['loss']:.4f}")

    out = args.out
    written = [
        pictures.sample_digits(test_x, test_y, out / "digits.png", count=args.count),
        pictures.first_layer_weights(model, out / "weights.png"),
        pictures.misclassified_digits(
            test_x,
            test_y,
            model.predict_proba(test_x),
            out / "misclassified.png",
            count=args.count,
        ),  # fmt: skip
        pictures.confusion_matrix_image(scores["confusion_matrix"], out / "confusion.png"),
    ]
    try:
        written.append(pictures.training_curves(args.model, out / "curves.png", title=arch))
    except (ValueError, ImportError) as exc:  # no history in the file, or no matplotlib
        print(f"no training curves: {exc}")
    for path in written:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
