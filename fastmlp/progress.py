"""What training shows while it runs: a tqdm bar per epoch on a terminal, a table row per epoch."""

from __future__ import annotations

import sys
from typing import Any


class Reporter:
    """A tqdm bar per epoch on a terminal, and a table row per epoch on stdout."""

    def __init__(self, enabled: bool, with_validation: bool) -> None:
        self.enabled = enabled
        self.with_validation = with_validation
        self.header_done = False

    def warmed_up(self, seconds: float) -> None:
        if self.enabled and seconds > 1.0:  # a first run: the kernels were compiled
            print(f"compiled the kernels in {seconds:.1f} s (cached: later runs skip this)")

    def start_epoch(self, epoch: int, epochs: int, n: int) -> Any:
        if not (self.enabled and sys.stderr.isatty()):
            return None
        from tqdm import tqdm

        return tqdm(total=n, desc=f"epoch {epoch + 1}/{epochs}", unit="img", leave=False)

    def advance(self, bar: Any, rows: int, loss: float) -> None:
        if bar is not None:
            bar.update(rows)
            bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self, bar: Any) -> None:
        if bar is not None:
            bar.close()

    def epoch_line(self, entry: dict[str, Any]) -> None:
        if not self.enabled:
            return
        if not self.header_done:
            val = f" {'val_loss':>9} {'val_acc':>8}" if self.with_validation else ""
            print(f"{'epoch':>5} {'loss':>8} {'acc':>8}{val} {'seconds':>8}", flush=True)
            self.header_done = True
        val = (
            f" {entry['val_loss']:9.4f} {entry['val_accuracy']:8.2%}"
            if self.with_validation
            else ""
        )
        print(
            f"{entry['epoch']:5d} {entry['loss']:8.4f} {entry['accuracy']:8.2%}{val} "
            f"{entry['seconds']:8.3f}",
            flush=True,
        )
