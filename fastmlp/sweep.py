"""Sweeps: many ``fastmlp train`` runs over a grid of options and seeds, in parallel.

A sweep is a grid (or a seeded random sample of it) over training options, each point run
with every seed. Every trial is one ``fastmlp train`` run, parsed and executed by the
command's own code in a worker process: local processes by default, or the workers of a
Dask distributed cluster (``--scheduler tcp://HOST:PORT``). Each result is appended to
``results.jsonl`` and ``results.csv`` in the output folder the moment its trial finishes;
running the same sweep again skips the trials already there.

Before the trials start, every worker runs a tiny training run so the Numba kernels are
compiled once per machine into the shared cache (the same NUMBA_CACHE_DIR, or the default
``__pycache__`` beside the kernels) and loaded by the others (:mod:`fastmlp.sweep_worker`,
which runs the trials); every trial records how many kernel signatures it had to compile
(``compiled``) and how many it loaded from the cache (``cache_hits``).

This module imports only the standard library at the top: ``fastmlp --help`` stays quick.
"""

from __future__ import annotations

import csv
import hashlib
import io
import itertools
import json
import os
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# The `fastmlp train` options a sweep may vary, and how their values are written.
OPTIONS = (
    "hidden",
    "activation",
    "init",
    "optimizer",
    "lr",
    "epochs",
    "batch_size",
    "weight_decay",
    "schedule",
    "backend",
    "threads",
)
METRICS = ("test_accuracy", "test_loss", "train_seconds", "seconds")
RESULT_FIELDS = (
    "trial", "status", "seed", "test_accuracy", "test_loss", "epochs_run", "stop_reason",
    "train_seconds", "warmup_seconds", "seconds", "compiled", "cache_hits", "host", "pid",
    "versions", "finished", "error",
)  # fmt: skip


class SweepError(ValueError):
    """A sweep that cannot start: a bad grid, seeds, or a results folder of another sweep."""


# --- what to run ---------------------------------------------------------------------------


def parse_seeds(text: str | int | Iterable[int]) -> list[int]:
    """``"0-4"`` -> [0, 1, 2, 3, 4]; ``"0,3,7"``, ``"0-2,9"``, ``5`` and lists work too."""
    if isinstance(text, int) and not isinstance(text, bool):
        return [text]
    if not isinstance(text, str):
        return [s for part in text for s in parse_seeds(part)]
    seeds: list[int] = []
    for part in text.replace(" ", "").split(","):
        low, dash, high = part.partition("-")
        try:
            first, last = int(low), int(high if dash else low)
        except ValueError:
            raise SweepError(f"seeds must look like 0-4 or 0,1,2, got {text!r}") from None
        if first < 0 or last < first or last - first > 100_000:
            raise SweepError(f"bad seed range {part!r} in {text!r}")
        seeds.extend(range(first, last + 1))
    return list(dict.fromkeys(seeds))


def grid_from(options: dict[str, Any]) -> dict[str, list[str]]:
    """Each option's values as the strings `fastmlp train` parses (a scalar is one value)."""
    grid = {}
    for name, values in options.items():
        key = name.replace("-", "_")
        if key not in OPTIONS:
            raise SweepError(f"cannot sweep {name!r}: choose from {', '.join(OPTIONS)}")
        values = values if isinstance(values, list | tuple) else [values]
        if not values:
            raise SweepError(f"option {name!r} has no values")
        grid[key] = [_value_text(v) for v in values]
    return grid


def _value_text(value: Any) -> str:
    if isinstance(value, list | tuple):  # hidden = [16, 16] in TOML
        return ",".join(str(v) for v in value)
    return str(value)


def make_trials(
    grid: dict[str, list[str]],
    seeds: list[int],
    samples: int | None = None,
    sample_seed: int = 0,
) -> list[dict[str, Any]]:
    """Every grid point (or ``samples`` of them, drawn with ``sample_seed``) with every seed."""
    if not seeds:
        raise SweepError("give at least one seed")
    names = sorted(grid)
    points = [dict(zip(names, values, strict=True)) for values in
              itertools.product(*(grid[n] for n in names))]  # fmt: skip
    if samples is not None:
        if samples < 1:
            raise SweepError(f"samples must be at least 1, got {samples}")
        points = random.Random(sample_seed).sample(points, min(samples, len(points)))
    trials = []
    for point in points:
        for seed in seeds:
            trial = {"options": point, "seed": int(seed)}
            trial["trial"] = trial_id(trial)
            trials.append(trial)
    return trials


def trial_id(trial: dict[str, Any]) -> str:
    """A name that is the same for the same options and seed, in any sweep and order."""
    text = json.dumps({"options": trial["options"], "seed": trial["seed"]}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def load_config(path: str | os.PathLike) -> dict[str, Any]:
    """A TOML sweep file: ``seeds``, ``samples``, ``sample_seed`` and an ``[options]`` table."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        raise SweepError("sweep files need Python 3.11 (tomllib); give flags instead") from None
    try:
        config = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SweepError(f"{path}: not a valid TOML file: {exc}") from None
    unknown = set(config) - {"seeds", "samples", "sample_seed", "options"}
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)}; use seeds, samples, "
                         "sample_seed and an [options] table")  # fmt: skip
    return config


# --- the results files ------------------------------------------------------------------------


class Results:
    """``results.jsonl`` and ``results.csv`` in ``folder``, one row appended per finished trial.

    Each row is one ``write`` of one line, flushed and synced: an interrupted sweep keeps
    every row it finished, and a line cut short by a crash is dropped when the sweep resumes.
    """

    def __init__(self, folder: str | os.PathLike, option_names: list[str]) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.jsonl = self.folder / "results.jsonl"
        self.csv = self.folder / "results.csv"
        self.fields = [RESULT_FIELDS[0], RESULT_FIELDS[1], *option_names, *RESULT_FIELDS[2:]]
        for path in (self.jsonl, self.csv):
            _drop_partial_line(path)
        if self.csv.exists() and self.csv.stat().st_size:
            with self.csv.open(newline="", encoding="utf-8") as f:
                header = next(csv.reader(f), [])
            if header != self.fields:
                raise SweepError(
                    f"{self.csv} holds another sweep's results (columns {header}); "
                    "give another --out folder"
                )
        else:
            self._append(self.csv, _csv_line(self.fields))

    def rows(self) -> list[dict[str, Any]]:
        """Every row written so far (lines that do not parse are skipped)."""
        if not self.jsonl.exists():
            return []
        rows = []
        for line in self.jsonl.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return rows

    def add(self, row: dict[str, Any]) -> None:
        self._append(self.jsonl, json.dumps(row, sort_keys=True) + "\n")
        self._append(self.csv, _csv_line([_cell(row.get(f)) for f in self.fields]))

    @staticmethod
    def _append(path: Path, line: str) -> None:
        with path.open("a", encoding="utf-8", newline="") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())


def _csv_line(cells: list[Any]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerow(cells)
    return buffer.getvalue()


def _cell(value: Any) -> Any:
    return "" if value is None else value


def _drop_partial_line(path: Path) -> None:
    """Cut a last line left without its newline by a crash mid-write."""
    if not path.exists():
        return
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        with path.open("r+b") as f:
            f.truncate(data.rfind(b"\n") + 1)
