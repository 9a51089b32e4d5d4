"""The `fastmlp train`, `evaluate` and `predict` subcommands: argument parsing and printing only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastmlp import validation

# The default recipe: what `python scripts/train_mnist.py` runs with no flags.
DEFAULTS = {
    "hidden": "16,16",
    "activation": "relu",
    "optimizer": "sgd",
    "lr": 0.2,
    "epochs": 40,
    "batch_size": 32,
    "weight_decay": 2e-4,
    "schedule": "onecycle",
    "seed": 0,
    "backend": "numba",
    # The classic 50,000/10,000 split: the test set is never looked at during training.
    "validation": 10_000,
}


def _number(check: Callable[[str, Any], Any], parse: Callable[[str], Any]) -> Callable:
    """An argparse type: ``parse`` the text, then ``check`` it with fastmlp.validation."""

    def convert(text: str) -> Any:
        try:
            value = parse(text)
        except ValueError:
            kind = "whole number" if parse is int else "number"
            raise argparse.ArgumentTypeError(f"{text!r} is not a {kind}") from None
        try:
            return check("value", value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc).removeprefix("value ")) from None

    return convert


positive_int = _number(validation.positive_int, int)
non_negative_int = _number(validation.seed, int)
positive_float = _number(validation.positive_real, float)
non_negative_float = _number(validation.non_negative_real, float)


def hidden_sizes(text: str) -> list[int]:
    """'16,16' -> [16, 16]; '' or 'none' -> [] (a linear classifier)."""
    if text.strip().lower() in ("", "none"):
        return []
    try:
        sizes = [int(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 16,16, got {text!r}") from None
    if any(s < 1 for s in sizes):
        raise argparse.ArgumentTypeError(f"hidden widths must be at least 1, got {text!r}")
    return sizes


def add_train_parser(subparsers: Any) -> None:
    from fastmlp.schedules import SCHEDULES
    from kernels import ACTIVATIONS, BACKENDS, OPTIMIZERS

    p = subparsers.add_parser(
        "train",
        help="train an MLP on MNIST (or any dataset in its four-file IDX layout)",
        description="Train an MLP on MNIST; with no flags, 784-16-16-10 with the default recipe.",
    )
    p.add_argument(
        "--data-dir", help="folder with the four IDX files (default: the data search path)"
    )
    p.add_argument(
        "--hidden",
        type=hidden_sizes,
        default=None,
        help=f"hidden layer widths, comma-separated (default {DEFAULTS['hidden']})",
    )
    p.add_argument(
        "--activation",
        choices=[a for a in ACTIVATIONS if a != "identity"],
        help=f"hidden-layer activation (default {DEFAULTS['activation']})",
    )
    p.add_argument(
        "--init",
        choices=["he", "xavier", "he_uniform", "he_normal", "xavier_uniform", "xavier_normal"],
        help="weight initialisation (default: he for relu/silu, xavier for sigmoid/tanh)",
    )
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=DEFAULTS["optimizer"])
    p.add_argument("--lr", type=positive_float, default=DEFAULTS["lr"], help="learning rate")
    p.add_argument("--epochs", type=positive_int, default=DEFAULTS["epochs"])
    p.add_argument("--batch-size", type=positive_int, default=DEFAULTS["batch_size"])
    p.add_argument(
        "--weight-decay",
        type=non_negative_float,
        default=DEFAULTS["weight_decay"],
        help="L2 regularisation lambda",
    )
    p.add_argument(
        "--schedule",
        choices=["none", *SCHEDULES],
        default=DEFAULTS["schedule"],
        help="learning-rate schedule",
    )
    p.add_argument(
        "--seed", type=non_negative_int, help=f"initialisation seed (default {DEFAULTS['seed']})"
    )
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULTS["backend"])
    p.add_argument("--threads", type=positive_int, help="threads for the numba backend")
    p.add_argument(
        "--save",
        type=Path,
        help="model file to write, replacing one that is there (default: "
        "runs/mnist-ARCH-ACTIVATION-INIT.safetensors, numbered -2, -3... if taken)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="let an interrupted or diverged run replace the file at --save",
    )
    p.add_argument(
        "--resume", type=Path, help="continue training a saved model (its own architecture)"
    )
    p.add_argument(
        "--validation",
        type=non_negative_int,
        help="training images held out (seeded, stratified) to score after every epoch; the "
        "test set is scored once, at the end; 0 trains on all of them (default "
        f"{DEFAULTS['validation']}, or a sixth of the training images where that is fewer)",
    )
    p.add_argument(
        "--early-stopping",
        type=positive_int,
        metavar="PATIENCE",
        help="stop when the validation loss has not improved for PATIENCE epochs and keep "
        "the best epoch's parameters",
    )
    p.add_argument(
        "--augment",
        choices=("shift", "affine", "elastic", "affine+elastic"),
        help="train on randomly distorted images, new distortions every epoch (seeded)",
    )
    p.add_argument("--json", type=Path, help="write machine-readable results here")
    p.add_argument("--plot", type=Path, help="draw the training curves into this PNG")
    p.add_argument("--no-download", action="store_true", help="fail rather than download MNIST")
    p.add_argument("--quiet", action="store_true", help="print only the final result")
    p.set_defaults(handler=cmd_train)


def add_evaluate_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "evaluate", help="loss, accuracy and confusion matrix of a saved model"
    )
    p.add_argument("model", type=Path, help="a .safetensors file written by fastmlp")
    p.add_argument(
        "--data-dir", help="folder with the four IDX files (default: the data search path)"
    )
    p.add_argument("--backend", default="numba", help="numba, numpy or python")
    p.add_argument("--no-download", action="store_true", help="fail rather than download MNIST")
    p.set_defaults(handler=cmd_evaluate)


def add_predict_parser(subparsers: Any) -> None:
    p = subparsers.add_parser("predict", help="classify image files of handwritten digits")
    p.add_argument("model", type=Path, help="a .safetensors file written by fastmlp")
    p.add_argument("images", nargs="+", type=Path, help="image files (PNG, JPEG, ...)")
    p.add_argument("--backend", default="numba", help="numba, numpy or python")
    p.set_defaults(handler=cmd_predict)


def cmd_train(args: argparse.Namespace) -> int:
    import numpy as np

    from fastmlp.data import load_mnist
    from fastmlp.outputs import check_paths, default_save_path, save_run

    train_x, train_y, test_x, test_y = load_mnist(args.data_dir, download=not args.no_download)
    if args.validation is None:
        args.validation = min(DEFAULTS["validation"], len(train_x) // 6)
    if args.validation >= len(train_x):
        raise ValueError(
            f"--validation {args.validation} would hold out every one of the "
            f"{len(train_x)} training images"
        )
    if args.early_stopping is not None and args.validation == 0:
        raise ValueError("--early-stopping watches the validation loss: give --validation N > 0")
    n_inputs = int(np.prod(train_x.shape[1:]))
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    model = (
        _resumed_model(args, n_inputs, n_classes)
        if args.resume
        else _new_model(args, n_inputs, n_classes)
    )
    arch = "-".join(map(str, model.sizes))
    # Every path is checked before training, so no run's work is lost to a bad one.
    explicit = args.save is not None
    save_path = args.save if explicit else default_save_path(model)
    check_paths({"--resume": args.resume, "--save": save_path, "--json": args.json,
                 "--plot": args.plot})  # fmt: skip
    if not args.quiet:
        print(
            f"training {arch} {model.activation} on {len(train_x) - args.validation} images, "
            f"{args.validation} held out for validation "
            f"({args.backend} backend, {args.optimizer}, lr {args.lr:g}, "
            f"batch {args.batch_size}, {args.epochs} epochs)",
            flush=True,
        )
    history = model.fit(
        train_x,
        train_y,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        optimizer=args.optimizer,
        weight_decay=args.weight_decay,
        lr_schedule=None if args.schedule == "none" else args.schedule,
        validation_split=args.validation or None,
        early_stopping=args.early_stopping,
        augment=args.augment,
        shuffle=True,
        progress=not args.quiet,
        threads=args.threads,
    )
    scores = model.evaluate(test_x, test_y)
    saved, where = save_run(model, history, save_path, explicit=explicit, force=args.force)
    if args.json is not None:
        write_results_json(args.json, model, history, scores, saved)
    if args.plot is not None and history.epochs:
        from fastmlp.pictures import training_curves

        training_curves(history, args.plot)
    print(
        f"test accuracy {scores['accuracy']:.2%} (loss {scores['loss']:.4f}) after "
        f"{len(history.epochs)} epoch(s), {history.train_seconds:.2f} s of training"
    )
    print(where)
    if history.stop_reason == "diverged":
        print(f"fastmlp: error: {history.message}", file=sys.stderr)
        return 1
    if history.stop_reason == "interrupted":
        print(f"fastmlp: {history.message}", file=sys.stderr)
        return 130
    if history.stop_reason == "early_stopping" and not args.quiet:
        print(history.message)
    return 0


def _new_model(args: argparse.Namespace, n_inputs: int, n_classes: int) -> Any:
    from fastmlp.model import MLP
    from fastmlp.modelfile import max_model_bytes

    hidden = args.hidden if args.hidden is not None else hidden_sizes(DEFAULTS["hidden"])
    sizes = [n_inputs, *hidden, n_classes]
    # Refused before anything is allocated: the parameters alone would need this much.
    needed = 4 * sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))
    if needed > max_model_bytes():
        raise ValueError(
            f"a {'-'.join(map(str, sizes))} model needs {needed / 2**30:.1f} GiB for its "
            f"parameters alone, more than the {max_model_bytes()}-byte limit on models "
            "(FASTMLP_MAX_MODEL_BYTES lifts it)"
        )
    return MLP(
        sizes,
        activation=args.activation or DEFAULTS["activation"],
        init=args.init,
        seed=DEFAULTS["seed"] if args.seed is None else args.seed,
        backend=args.backend,
    )


def _resumed_model(args: argparse.Namespace, n_inputs: int, n_classes: int) -> Any:
    from fastmlp.model import MLP

    names = ("activation", "init", "seed")
    given = [f"--{name}" for name in names if getattr(args, name) is not None]
    if given:
        raise ValueError(
            f"{' and '.join(given)} cannot change a resumed model: it keeps the activation, "
            f"initialisation and seed saved in {args.resume} (drop {given[0]}, or train anew)"
        )
    model = MLP.load(args.resume, backend=args.backend)
    if args.hidden is not None and list(model.sizes[1:-1]) != args.hidden:
        raise ValueError(
            f"--hidden {','.join(map(str, args.hidden))} does not match the resumed model "
            f"{'-'.join(map(str, model.sizes))}"
        )
    if model.sizes[0] != n_inputs or model.sizes[-1] != n_classes:
        raise ValueError(
            f"the resumed model {'-'.join(map(str, model.sizes))} does not fit this data "
            f"({n_inputs} inputs, {n_classes} classes)"
        )
    return model


def write_results_json(
    path: Path, model: Any, history: Any, scores: dict, save_path: Path | None
) -> None:
    from fastmlp.files import write_atomically

    # The history goes in as History.to_dict() writes it, so every reader (plots, a model
    # file's metadata) sees one format; only the final test scores are added beside it.
    results = {
        "model": None if save_path is None else str(save_path),
        "sizes": list(model.sizes),
        "activation": model.activation,
        "init": model.init,
        "seed": model.seed,
        "test_accuracy": scores["accuracy"],
        "test_loss": scores["loss"],
        **history.to_dict(),
    }
    write_atomically(path, (json.dumps(results, indent=2) + "\n").encode())


def cmd_evaluate(args: argparse.Namespace) -> int:
    from fastmlp.data import load_mnist
    from fastmlp.model import MLP

    model = MLP.load(args.model, backend=args.backend)
    _, _, test_x, test_y = load_mnist(args.data_dir, download=not args.no_download)
    _check_classifier(args.model, model, int(test_y.max()) + 1)
    scores = model.evaluate(test_x, test_y)
    print(f"model     {args.model} ({'-'.join(map(str, model.sizes))}, {model.activation})")
    print(f"examples  {len(test_x)}")
    print(f"loss      {scores['loss']:.4f}")
    print(f"accuracy  {scores['accuracy']:.2%}")
    print("confusion matrix (rows: true class, columns: predicted):")
    print(format_confusion(scores["confusion_matrix"]))
    return 0


def _check_classifier(path: Path, model: Any, n_classes: int) -> None:
    """Refuse a model whose outputs cannot be read as this data's classes."""
    arch = "-".join(map(str, model.sizes))
    n_out = model.sizes[-1]
    if model.output == "identity":
        raise ValueError(
            f"{path}: the {arch} model has an identity (regression) output; evaluate needs "
            "a classifier (softmax or sigmoid output)"
        )
    fits = n_out >= n_classes if n_out > 1 else n_classes <= 2
    if not fits:
        raise ValueError(
            f"{path}: the {arch} model has {n_out} output(s), too few for the "
            f"{n_classes} classes of this data"
        )


def format_confusion(matrix: Any) -> str:
    width = max(5, len(str(int(matrix.max()))) + 1)
    lines = ["     " + "".join(f"{j:>{width}}" for j in range(matrix.shape[1]))]
    for i, row in enumerate(matrix):
        lines.append(f"{i:>4} " + "".join(f"{int(v):>{width}}" for v in row))
    return "\n".join(lines)


def cmd_predict(args: argparse.Namespace) -> int:
    """Classify each image; a bad image is one line naming it, the others still get results."""
    import numpy as np

    from fastmlp.model import MLP
    from fastmlp.preprocess import load_digit

    model = MLP.load(args.model, backend=args.backend)
    side = int(round(model.sizes[0] ** 0.5))
    if side * side != model.sizes[0]:
        raise ValueError(f"the model takes {model.sizes[0]} inputs, not a square image")
    good, digits, failed = [], [], 0
    for path in args.images:
        try:
            digits.append(load_digit(path, side=side))
            good.append(path)
        except (OSError, ValueError) as exc:
            failed += 1
            print(f"fastmlp: error: {' '.join(str(exc).splitlines())}", file=sys.stderr)
    if digits:
        probabilities = model.predict_proba(np.stack(digits))
        for path, row in zip(good, probabilities, strict=True):
            label = int(row.argmax())
            print(f"{path}: {label} ({row[label]:.1%})")
    return 1 if failed else 0
