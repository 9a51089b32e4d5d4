"""Learning-rate schedules: the rate of every optimizer step, decided before the kernels run."""

from __future__ import annotations

import math

import numpy as np

SCHEDULES: tuple[str, ...] = ("step", "cosine", "onecycle")


def learning_rates(
    schedule: str | None, lr: float, epoch: int, epochs: int, steps_per_epoch: int
) -> np.ndarray:
    """Learning rate of every step of ``epoch`` (0-based), as float32.

    ``None``: constant. ``"step"``: divided by 10 every third of the run (PyTorch StepLR).
    ``"cosine"``: cosine decay to zero over all steps. ``"onecycle"``: PyTorch OneCycleLR's
    defaults, warm-up from lr/25 over the first 30% of steps, cosine down to lr/25e4.
    """
    total = epochs * steps_per_epoch
    step = np.arange(epoch * steps_per_epoch, (epoch + 1) * steps_per_epoch, dtype=np.float64)
    if schedule is None:
        rates = np.full(steps_per_epoch, lr)
    elif schedule == "step":
        step_size = max(1, math.ceil(epochs / 3))
        rates = np.full(steps_per_epoch, lr * 0.1 ** (epoch // step_size))
    elif schedule == "cosine":
        rates = 0.5 * lr * (1 + np.cos(np.pi * step / total))
    elif schedule == "onecycle":
        start, end = lr / 25, lr / 25e4
        warm = max(1.0, 0.3 * total)
        up = start + (lr - start) * 0.5 * (1 - np.cos(np.pi * step / warm))
        progress = np.clip((step - warm) / max(1.0, total - warm), 0, 1)
        down = end + (lr - end) * 0.5 * (1 + np.cos(np.pi * progress))
        rates = np.where(step < warm, up, down)
    else:
        raise ValueError(f"unknown lr_schedule {schedule!r}; choose None or one of {SCHEDULES}")
    return rates.astype(np.float32)
