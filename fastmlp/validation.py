"""Checks of user-given values, written once for the model, the trainer, the data sets and
the command line.

Each function returns the value converted to a plain Python ``int`` or ``float`` and
raises ``ValueError`` with one line naming the parameter otherwise. NumPy scalars
(``np.int64(32)``, ``np.float32(0.1)``) are accepted as the numbers they are; ``bool`` is
refused everywhere a number is asked for (``lr=True`` is a mistake, not ``1``).
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def integer(name: str, value: Any, minimum: int | None = None) -> int:
    """``value`` as an ``int`` (at least ``minimum`` when given)."""
    if not _is_integer(value):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


def positive_int(name: str, value: Any) -> int:
    """``value`` as an ``int`` >= 1."""
    return integer(name, value, minimum=1)


def real(name: str, value: Any) -> float:
    """``value`` as a finite ``float``."""
    if not _is_real(value) or not math.isfinite(float(value)):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def positive_real(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` > 0."""
    number = real(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    return number


def non_negative_real(name: str, value: Any) -> float:
    """``value`` as a finite ``float`` >= 0."""
    number = real(name, value)
    if number < 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    return number


def probability(name: str, value: Any, *, inclusive_high: bool = False) -> float:
    """``value`` as a ``float`` in [0, 1) (or [0, 1] with ``inclusive_high``)."""
    number = real(name, value)
    high_ok = number <= 1 if inclusive_high else number < 1
    if number < 0 or not high_ok:
        bracket = "]" if inclusive_high else ")"
        raise ValueError(f"{name} must lie in [0, 1{bracket}, got {value!r}")
    return number


def seed(name: str, value: Any) -> int:
    """A random seed: an ``int`` >= 0."""
    return integer(name, value, minimum=0)


def choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """``value`` if it is one of ``choices``."""
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}")
    return value
