"""Small data sets to learn with: XOR, 2x2 bars, moons, circles, spirals, study/sleep.

Every generator is seeded (the same seed gives the same arrays, whatever the machine),
takes a noise level, and returns float32 inputs with either integer class ids or float32
targets, ready for :class:`fastmlp.MLP`. No scikit-learn: each is a few lines of NumPy.

>>> from fastmlp.datasets import moons, train_test_split
>>> X, y = moons(1000, noise=0.1, seed=0)
>>> X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, seed=0)
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from fastmlp import validation as check

__all__ = [
    "BAR_PATTERNS",
    "bars",
    "holdout_indices",
    "holdout_rows",
    "holdout_size",
    "circles",
    "moons",
    "spiral",
    "study_sleep",
    "train_test_split",
    "xor",
]

# The "TinyNet" 2x2 images, pixels read row by row (top-left, top-right, bottom-left,
# bottom-right), and the (horizontal, vertical) target each one teaches.
BAR_PATTERNS: dict[str, tuple[tuple[float, ...], tuple[float, float]]] = {
    "horizontal top": ((1, 1, 0, 0), (1, 0)),
    "horizontal bottom": ((0, 0, 1, 1), (1, 0)),
    "vertical left": ((1, 0, 1, 0), (0, 1)),
    "vertical right": ((0, 1, 0, 1), (0, 1)),
}


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(check.seed("seed", seed))


def _shuffled(rng: np.random.Generator, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    # Generators build one class after another; shuffling keeps a plain slice or a
    # mini-batch from seeing a single class.
    order = rng.permutation(len(arrays[0]))
    return tuple(np.ascontiguousarray(a[order]) for a in arrays)


def xor(n_per_case: int = 1, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The XOR truth table, optionally repeated and jittered.

    Parameters
    ----------
    n_per_case : int
        Copies of each of the four cases.
    noise : float
        Standard deviation of Gaussian noise added to the inputs (0: the exact table).
    seed : int
        Seeds the noise.

    Returns
    -------
    X : ndarray of float32, shape (4 * n_per_case, 2)
        Rows cycle through (0, 0), (0, 1), (1, 0), (1, 1), so every block of four
        consecutive rows is the whole table: with ``shuffle=False`` and
        ``batch_size=4`` each step of :meth:`fastmlp.MLP.fit` is one full-batch step.
    y : ndarray of float32, shape (4 * n_per_case,)
        The targets 0, 1, 1, 0 (for a single sigmoid output trained with MSE).
    """
    n = check.positive_int("n_per_case", n_per_case)
    noise = check.non_negative_real("noise", noise)
    rng = _rng(seed)
    table = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], np.float32)
    X = np.tile(table, (n, 1))
    if noise:
        X += rng.normal(0.0, noise, X.shape).astype(np.float32)
    y = np.tile(np.array([0, 1, 1, 0], np.float32), n)
    return X, y


def bars(
    n_per_pattern: int = 1000, noise: float = 0.3, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Noisy 2x2 images of horizontal and vertical bars (the "TinyNet" exercise).

    The four base patterns of :data:`BAR_PATTERNS` (top and bottom horizontal bars,
    left and right vertical bars), each copied ``n_per_pattern`` times with Gaussian
    noise added to every pixel.

    Parameters
    ----------
    n_per_pattern : int
        Noisy copies of each of the four patterns.
    noise : float
        Standard deviation of the Gaussian pixel noise (the pixels are 0 or 1).
    seed : int
        Seeds the noise and the order of the rows.

    Returns
    -------
    X : ndarray of float32, shape (4 * n_per_pattern, 4)
        The pixels, row by row, in shuffled order.
    Y : ndarray of float32, shape (4 * n_per_pattern, 2)
        Targets ``(horizontal, vertical)``: ``(1, 0)`` for a horizontal bar,
        ``(0, 1)`` for a vertical one (two sigmoid outputs trained with MSE).
    """
    n = check.positive_int("n_per_pattern", n_per_pattern)
    noise = check.non_negative_real("noise", noise)
    rng = _rng(seed)
    pixels = np.array([p for p, _ in BAR_PATTERNS.values()], np.float32)
    targets = np.array([t for _, t in BAR_PATTERNS.values()], np.float32)
    X = np.repeat(pixels, n, axis=0)
    X += rng.normal(0.0, noise, X.shape).astype(np.float32)
    Y = np.repeat(targets, n, axis=0)
    return _shuffled(rng, X, Y)  # type: ignore[return-value]


def moons(n: int = 1000, noise: float = 0.1, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (scikit-learn's ``make_moons``).

    Parameters
    ----------
    n : int
        Number of points; class 0 gets the extra one when ``n`` is odd.
    noise : float
        Standard deviation of Gaussian noise added to both coordinates (the moons have
        radius 1).
    seed : int
        Seeds the noise and the order of the rows.

    Returns
    -------
    X : ndarray of float32, shape (n, 2)
    y : ndarray of int64, shape (n,)
        0 for the upper moon, 1 for the lower one.
    """
    n = check.integer("n", n, minimum=2)
    noise = check.non_negative_real("noise", noise)
    rng = _rng(seed)
    n_upper = n - n // 2
    t_upper = np.linspace(0, np.pi, n_upper)
    t_lower = np.linspace(0, np.pi, n // 2)
    upper = np.column_stack([np.cos(t_upper), np.sin(t_upper)])
    lower = np.column_stack([1 - np.cos(t_lower), 0.5 - np.sin(t_lower)])
    X = np.vstack([upper, lower]) + rng.normal(0.0, noise, (n, 2))
    y = np.concatenate([np.zeros(n_upper, np.int64), np.ones(n // 2, np.int64)])
    return _shuffled(rng, X.astype(np.float32), y)  # type: ignore[return-value]


def circles(
    n: int = 1000, noise: float = 0.05, factor: float = 0.5, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A circle inside a circle (scikit-learn's ``make_circles``).

    Parameters
    ----------
    n : int
        Number of points; the outer circle gets the extra one when ``n`` is odd.
    noise : float
        Standard deviation of Gaussian noise added to both coordinates (the outer
        circle has radius 1).
    factor : float
        Radius of the inner circle, between 0 and 1.
    seed : int
        Seeds the noise and the order of the rows.

    Returns
    -------
    X : ndarray of float32, shape (n, 2)
    y : ndarray of int64, shape (n,)
        0 for the outer circle, 1 for the inner one.
    """
    n = check.integer("n", n, minimum=2)
    noise = check.non_negative_real("noise", noise)
    factor = check.real("factor", factor)
    if not 0 < factor < 1:
        raise ValueError(f"factor must lie strictly between 0 and 1, got {factor!r}")
    rng = _rng(seed)
    n_outer = n - n // 2
    # endpoint=False: 0 and 2*pi are the same point, which would be drawn twice.
    t_outer = np.linspace(0, 2 * np.pi, n_outer, endpoint=False)
    t_inner = np.linspace(0, 2 * np.pi, n // 2, endpoint=False)
    outer = np.column_stack([np.cos(t_outer), np.sin(t_outer)])
    inner = factor * np.column_stack([np.cos(t_inner), np.sin(t_inner)])
    X = np.vstack([outer, inner]) + rng.normal(0.0, noise, (n, 2))
    y = np.concatenate([np.zeros(n_outer, np.int64), np.ones(n // 2, np.int64)])
    return _shuffled(rng, X.astype(np.float32), y)  # type: ignore[return-value]


def spiral(
    n: int = 1000, arms: int = 2, noise: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Interleaved spiral arms, one class per arm (after the CS231n spiral).

    Arm ``k`` runs from the centre out to radius 1, its angle growing by 4 radians
    along the way, and starts at angle ``2*pi*k / arms`` (CS231n starts arm ``k`` at
    ``4*k``, which spaces three arms unevenly). Gaussian noise of standard deviation
    ``noise`` is added to the angle, so it blurs the arms most far out, where they are
    far apart, and least near the centre, where they meet.

    Parameters
    ----------
    n : int
        Number of points, shared as evenly as possible between the arms.
    arms : {2, 3}
        Number of arms (classes); more are accepted.
    noise : float
        Standard deviation of the Gaussian noise on the angle, in radians.
    seed : int
        Seeds the noise and the order of the rows.

    Returns
    -------
    X : ndarray of float32, shape (n, 2)
    y : ndarray of int64, shape (n,)
        The arm of each point, ``0 .. arms - 1``.
    """
    arms = check.integer("arms", arms, minimum=2)
    n = check.integer("n", n, minimum=arms)
    noise = check.non_negative_real("noise", noise)
    rng = _rng(seed)
    counts = [n // arms + (k < n % arms) for k in range(arms)]
    points, labels = [], []
    for k, count in enumerate(counts):
        radius = np.linspace(0.0, 1.0, count)
        angle = 2 * np.pi * k / arms + 4 * radius + rng.normal(0.0, noise, count)
        points.append(np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]))
        labels.append(np.full(count, k, np.int64))
    X = np.vstack(points).astype(np.float32)
    return _shuffled(rng, X, np.concatenate(labels))  # type: ignore[return-value]


def study_sleep(n: int = 200, noise: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Hours studied and hours slept the night before, and whether the student passed.

    A student passes when ``studied + 0.5 * slept`` plus Gaussian noise reaches 8
    (so 6 hours of study after 4 hours of sleep is a coin flip, and sleep is worth half
    as much as study). A single sigmoid unit (sizes ``[2, 1]``, MSE) learns the line.

    Parameters
    ----------
    n : int
        Number of students.
    noise : float
        Standard deviation of the luck on the exam, in hours of study.
    seed : int
        Seeds the hours and the luck.

    Returns
    -------
    X : ndarray of float32, shape (n, 2)
        Columns: hours studied (0 to 10), hours slept (3 to 10). Not scaled: dividing
        by 10 puts both near the unit range a sigmoid unit likes.
    y : ndarray of float32, shape (n,)
        1.0 for a pass, 0.0 for a fail.
    """
    n = check.positive_int("n", n)
    noise = check.non_negative_real("noise", noise)
    rng = _rng(seed)
    studied = rng.uniform(0.0, 10.0, n)
    slept = rng.uniform(3.0, 10.0, n)
    score = studied + 0.5 * slept + rng.normal(0.0, noise, n)
    X = np.column_stack([studied, slept]).astype(np.float32)
    return X, (score >= 8.0).astype(np.float32)


def train_test_split(
    *arrays: np.ndarray,
    test_size: float | int = 0.25,
    seed: int = 0,
    shuffle: bool = True,
    stratify: Any = None,
) -> list[np.ndarray]:
    """Split arrays with the same number of rows into a training and a test part.

    Parameters
    ----------
    *arrays : array_like
        Arrays sharing their first dimension, e.g. ``X, y``.
    test_size : float or int
        A fraction of the rows (``0 < test_size < 1``) or a number of rows.
    seed : int
        Seeds the shuffle.
    shuffle : bool
        Shuffle the rows first; otherwise the test part is the last rows.
    stratify : array_like, optional
        Class ids, one per row: each class gets its share of the test part (see
        :func:`holdout_indices`); needs ``shuffle``. Both parts keep the rows' order.

    Returns
    -------
    list of ndarray
        ``train, test`` for each input in turn, like scikit-learn:
        ``X_train, X_test, y_train, y_test``.
    """
    if not arrays:
        raise ValueError("give at least one array to split")
    arrays_np = [np.asarray(a) for a in arrays]
    n = len(arrays_np[0])
    if any(len(a) != n for a in arrays_np):
        raise ValueError(f"arrays have different numbers of rows: {[len(a) for a in arrays_np]}")
    if stratify is not None:
        if not shuffle:
            raise ValueError("stratify needs shuffle=True: a stratified split is a random one")
        train, test = holdout_indices(n, test_size, seed=seed, classes=stratify, name="test_size")
    else:
        n_test = holdout_rows("test_size", test_size, n)
        order = _rng(seed).permutation(n) if shuffle else np.arange(n)
        train, test = order[: n - n_test], order[n - n_test :]
    out = []
    for a in arrays_np:
        out += [np.ascontiguousarray(a[train]), np.ascontiguousarray(a[test])]
    return out


def holdout_size(name: str, size: float | int) -> float | int:
    """``size`` as a number of rows (an ``int`` >= 1) or a fraction (a ``float`` in (0, 1))."""
    if isinstance(size, numbers.Integral) and not isinstance(size, bool):
        return check.positive_int(name, size)
    fraction = check.real(name, size)
    if not 0 < fraction < 1:
        raise ValueError(f"a fractional {name} must lie in (0, 1), got {size!r}")
    return fraction


def holdout_rows(name: str, size: float | int, n: int) -> int:
    """How many of ``n`` rows a hold-out of ``size`` takes: a count, or a fraction in (0, 1).

    Raises ``ValueError`` naming ``name`` unless both sides keep at least one row.
    """
    size = holdout_size(name, size)
    rows = size if isinstance(size, int) else round(n * size)
    if not 0 < rows < n:
        raise ValueError(f"{name} {size!r} leaves no rows for one side of {n} rows")
    return rows


def holdout_indices(
    n_rows: int,
    size: float | int,
    *,
    seed: int = 0,
    classes: Any = None,
    name: str = "validation_split",
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices of the rest and of a seeded random hold-out of ``size`` rows.

    With ``classes`` (one id per row) the hold-out is stratified: each class gives its
    share, rounded down, and the rows left over go to the classes with the largest
    remainders, so every class is represented as in the whole. Both index arrays are
    ascending: the rows keep their order.

    Parameters
    ----------
    n_rows : int
        Rows to split.
    size : float or int
        A fraction in (0, 1) or a number of rows (see :func:`holdout_rows`).
    seed : int
        Seeds which rows are held out.
    classes : array_like, optional
        Class id of each row, to stratify by.
    name : str
        The parameter named in errors.

    Returns
    -------
    rest, holdout : ndarray of int64
    """
    n_holdout = holdout_rows(name, size, n_rows)
    classes = np.zeros(n_rows, np.int64) if classes is None else np.asarray(classes)
    if classes.shape != (n_rows,):
        raise ValueError(f"give one class id per row to stratify by: {classes.shape} for {n_rows}")
    order = _rng(seed).permutation(n_rows)
    by_class = order[np.argsort(classes[order], kind="stable")]  # each class in random order
    counts = np.unique(classes, return_counts=True)[1]
    share = counts * (n_holdout / n_rows)
    take = np.floor(share).astype(np.int64)
    leftover = n_holdout - int(take.sum())
    take[np.argsort(take - share, kind="stable")[:leftover]] += 1  # largest remainders
    starts = np.cumsum(counts) - counts
    held = np.zeros(n_rows, bool)
    held[np.concatenate([by_class[a : a + k] for a, k in zip(starts, take, strict=True)])] = True
    return np.flatnonzero(~held), np.flatnonzero(held)
