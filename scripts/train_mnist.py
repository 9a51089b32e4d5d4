#!/usr/bin/env python
"""Train the classic 784-16-16-10 MLP on MNIST: `python scripts/train_mnist.py --help`.

A thin wrapper over `fastmlp train`; with no flags it runs the default recipe, prints a
per-epoch table and the final test accuracy, and saves the model.

The short forms of the MNIST-from-scratch tutorials work too:

    python scripts/train_mnist.py -t [MODEL] [train flags]   # train; continue from MODEL if given
    python scripts/train_mnist.py -i MODEL                   # test set: scores and a grid of digits

``-t MODEL`` is ``fastmlp train --resume MODEL``. ``-i MODEL`` is ``fastmlp evaluate
MODEL`` followed by a picture of the first test digits, each captioned with the predicted
and (in brackets) the true label: shown in a window where there is a display, and always
written to a PNG whose name is printed (``--out`` chooses it).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from fastmlp.cli import main

SHORT_FORMS = """
short forms (as in the MNIST-from-scratch tutorials):
  -t [MODEL]   train (the flags above apply); continue from MODEL when given
  -i MODEL     evaluate MODEL on the test set and show a grid of test digits
               with predicted and true labels [--data-dir D] [--no-download]
               [--count N] [--out PNG] [--no-window]
"""


def evaluate_and_show(argv: list[str]) -> int:
    """``-i MODEL``: ``fastmlp evaluate MODEL``, then the grid of predicted and true labels."""
    parser = argparse.ArgumentParser(
        prog="train_mnist.py -i", description="Evaluate a model on the MNIST test set."
    )
    parser.add_argument("-i", dest="model", type=Path, required=True, metavar="MODEL")
    parser.add_argument("--data-dir", help="MNIST folder (default: the data search path)")
    parser.add_argument("--no-download", action="store_true", help="fail rather than download")
    parser.add_argument("--count", type=int, default=64, help="digits in the grid (default 64)")
    parser.add_argument("--out", type=Path, help="the PNG (default: MODEL-test-digits.png)")
    parser.add_argument("--no-window", action="store_true", help="only write the PNG")
    args = parser.parse_args(argv)

    evaluate = ["evaluate", str(args.model)]
    if args.data_dir:
        evaluate += ["--data-dir", args.data_dir]
    if args.no_download:
        evaluate.append("--no-download")
    status = main(evaluate)  # prints the scores, or one error line
    if status != 0:
        return status
    return one_line_errors(lambda: _grid(args))


def one_line_errors(work) -> int:  # noqa: ANN001 - a callable
    """Run ``work`` with the command line's error handling: one line, never a traceback."""
    from fastmlp.idx import IDXError

    try:
        return work()
    except (IDXError, OSError, ValueError) as exc:
        print(f"fastmlp: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
        return 1


def _grid(args: argparse.Namespace) -> int:
    import numpy as np

    from fastmlp.data import load_mnist
    from fastmlp.model import MLP
    from fastmlp.pictures import sample_digits

    if args.count < 1:
        raise ValueError(f"--count must be at least 1, got {args.count}")
    model = MLP.load(args.model)
    _, _, test_x, test_y = load_mnist(args.data_dir, download=not args.no_download)
    count = min(args.count, len(test_x))
    predicted = model.predict(test_x[:count])
    captions = np.array(
        [
            f"{p} ({t})" if p == t else f"{p} ({t}) wrong"
            for p, t in zip(predicted, test_y[:count], strict=True)
        ]
    )
    out = args.out or args.model.with_name(f"{args.model.stem}-test-digits.png")
    sample_digits(test_x[:count], captions, out, count=count)
    wrong = int((predicted != test_y[:count]).sum())
    print(f"first {count} test digits, predicted (true): {wrong} wrong; picture written to {out}")
    if not args.no_window and _has_display():
        from PIL import Image

        with Image.open(out) as picture:
            picture.show(title=str(out))
    return 0


def _has_display() -> bool:
    # Pillow's show() needs a desktop: always there on Windows and macOS, an X or Wayland
    # display elsewhere.
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def translate(argv: list[str]) -> list[str]:
    """``-t [MODEL] flags`` -> ``train [--resume MODEL] flags``; anything else -> ``train ...``."""
    if "-t" not in argv:
        return ["train", *argv]
    at = argv.index("-t")
    rest = argv[:at] + argv[at + 1 :]
    if at + 1 < len(argv) and not argv[at + 1].startswith("-"):
        model = argv[at + 1]
        rest = argv[:at] + argv[at + 2 :]
        return ["train", "--resume", model, *rest]
    return ["train", *rest]


def run(argv: list[str]) -> int:
    if "-t" in argv and "-i" in argv:
        print("fastmlp: error: give -t (train) or -i (evaluate), not both", file=sys.stderr)
        return 2
    if "-i" in argv:
        return evaluate_and_show(argv)
    if argv in (["-h"], ["--help"]):
        status = main(["train", "--help"])
        print(SHORT_FORMS)
        return status
    return main(translate(argv))


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
