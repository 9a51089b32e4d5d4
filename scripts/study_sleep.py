#!/usr/bin/env python
"""Hours studied and hours slept -> pass or fail, learned by a single sigmoid unit (2-1, MSE).

The students of :func:`fastmlp.datasets.study_sleep` pass when ``studied + 0.5 * slept``
(plus luck) reaches 8. A 2-1 network is logistic regression trained with squared error:
it learns a straight line between passing and failing, printed here in hours, and then
predicts a few new students.

    python scripts/study_sleep.py --out runs/study_sleep

Writes ``OUT/study_sleep_boundary.png`` (the line and the students, hours / 10 on both
axes) and ``OUT/study_sleep_curves.png``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from fastmlp import MLP
from fastmlp.datasets import study_sleep, train_test_split
from fastmlp.pictures import decision_boundary, training_curves

# Hours divided by 10 sit near the unit range, where a sigmoid unit learns quickly.
HOURS = 10.0
NEW_STUDENTS = [(2.0, 8.0), (4.0, 6.0), (5.0, 7.0), (8.0, 3.0), (9.0, 8.0)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the pictures")
    parser.add_argument("--students", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=200)
    parser.add_argument("--lr", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--backend", default="numba", choices=["numba", "numpy", "python"])
    args = parser.parse_args(argv)

    hours, passed = study_sleep(args.students, seed=args.seed)
    X_train, X_test, y_train, y_test = train_test_split(
        hours / HOURS, passed, test_size=0.25, seed=args.seed
    )
    model = MLP(
        [2, 1], activation="sigmoid", output="sigmoid", seed=args.seed, backend=args.backend
    )
    history = model.fit(
        X_train, y_train, epochs=args.epochs, batch_size=10, lr=args.lr, progress=False
    )
    print(
        f"2-1 sigmoid unit, MSE, SGD lr {args.lr:g}, {args.epochs} epochs, {len(X_train)} students"
    )
    print(f"final training loss {history.epochs[-1]['loss']:.4f}")
    accuracy = model.evaluate(X_test, y_test)["accuracy"]
    print(f"held-out accuracy   {accuracy:.2%} ({len(X_test)} students)")

    state = model.state_dict()
    (w_study, w_sleep), bias = state["0.weight"][0], state["0.bias"][0]
    # The unit says "pass" where w . x + b > 0; in hours, scaled so study counts 1.
    print(
        f"learned rule: pass when studied + {w_sleep / w_study:.2f} x slept > "
        f"{-bias * HOURS / w_study:.2f} hours (the data's rule: studied + 0.50 x slept >= 8)"
    )
    new = np.array(NEW_STUDENTS, np.float32)
    chance = model.predict_proba(new / HOURS)[:, 0]
    print("new students:")
    for (studied, slept), p in zip(NEW_STUDENTS, chance, strict=True):
        verdict = "pass" if p > 0.5 else "fail"
        print(f"  studied {studied:4.1f} h, slept {slept:4.1f} h -> {p:.2f} ({verdict})")

    boundary = decision_boundary(
        model, hours / HOURS, passed, args.out / "study_sleep_boundary.png",
        title="across: hours studied / 10; up: hours slept / 10", class_names=["fail", "pass"],
    )  # fmt: skip
    curves = training_curves(history, args.out / "study_sleep_curves.png", title="study/sleep")
    print(f"wrote {boundary} and {curves}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
