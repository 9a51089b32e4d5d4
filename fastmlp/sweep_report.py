"""What a sweep found: the best settings (mean over seeds) and a picture of a metric against
one swept option, seeds drawn as the spread."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path
from typing import Any

from fastmlp.sweep import OPTIONS

# A metric is better when larger, unless it is a loss or a time.
LOWER_IS_BETTER = {"test_loss", "train_seconds", "seconds"}
_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b",
           "#e377c2"]  # fmt: skip


def _swept(rows: list[dict[str, Any]]) -> list[str]:
    """Options that take more than one value among the rows."""
    return [n for n in OPTIONS if len({str(r.get(n)) for r in rows if n in r}) > 1]


def _settings(rows: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    """One entry per combination of options: the metric's mean, min and max over seeds."""
    groups: dict[tuple, list[float]] = {}
    for row in rows:
        value = row.get(metric)
        if row.get("status") != "ok" or not isinstance(value, int | float) or math.isnan(value):
            continue
        key = tuple((n, str(row[n])) for n in OPTIONS if n in row)
        groups.setdefault(key, []).append(float(value))
    settings = [{"options": dict(key), "mean": sum(v) / len(v), "min": min(v), "max": max(v),
                 "seeds": len(v)} for key, v in groups.items()]  # fmt: skip
    settings.sort(key=lambda s: s["mean"], reverse=metric not in LOWER_IS_BETTER)
    return settings


def summary_lines(
    rows: list[dict[str, Any]], metric: str = "test_accuracy", top: int = 5
) -> list[str]:
    """The best ``top`` settings by the mean of ``metric`` over their seeds, and the failures."""
    ok = [r for r in rows if r.get("status") == "ok"]
    lines = [f"{len(rows)} trials, {len(ok)} ok, {len(rows) - len(ok)} failed"]
    settings = _settings(rows, metric)
    if settings:
        lines.append(f"best settings by {metric} (mean over seeds, min..max):")
        for rank, s in enumerate(settings[:top], 1):
            options = " ".join(f"{k}={v}" for k, v in s["options"].items())
            lines.append(f"{rank:>3}. {_fmt(metric, s['mean'])}  ({_fmt(metric, s['min'])}.."
                         f"{_fmt(metric, s['max'])}, {s['seeds']} seeds)  {options}")  # fmt: skip
    for row in rows:
        if row.get("status") != "ok":
            lines.append(f"failed: {row['trial']} seed={row.get('seed')}: {row.get('error')}")
    return lines


def _fmt(metric: str, value: float) -> str:
    return f"{value:.2%}" if metric.endswith("accuracy") else f"{value:.4g}"


def _order(values: set[str]) -> list[str]:
    try:
        return sorted(values, key=float)
    except ValueError:
        return sorted(values)


def draw_sweep(
    rows: list[dict[str, Any]],
    path: str | os.PathLike,
    metric: str = "test_accuracy",
    option: str | None = None,
) -> Path | None:
    """A PNG of ``metric`` against ``option`` (default: the first swept option): one line per
    combination of the other options through the seeds' mean, a bar from their min to max,
    and every seed as a dot. Returns None when there is nothing to draw."""
    from PIL import Image, ImageDraw, ImageFont

    from fastmlp.files import write_atomically

    swept = _swept(rows)
    option = option or (swept[0] if swept else None)
    points = [r for r in rows if r.get("status") == "ok" and isinstance(r.get(metric), int | float)
              and option in r]  # fmt: skip
    if option is None or not points:
        return None
    xs = _order({str(r[option]) for r in points})
    others = [n for n in swept if n != option]
    series: dict[str, dict[str, list[float]]] = {}
    for r in points:
        label = " ".join(f"{n}={r.get(n)}" for n in others) or "all"
        series.setdefault(label, {}).setdefault(str(r[option]), []).append(float(r[metric]))
    values = [float(r[metric]) for r in points]
    low, high = min(values), max(values)
    pad = (high - low) * 0.1 or abs(high) * 0.05 or 1.0
    low, high = low - pad, high + pad
    width, height, left, right, top, bottom = 720, 440, 80, 20, 40, 70
    legend_rows = min(len(series), len(_COLORS))
    height += 16 * legend_rows
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()
    plot_bottom = height - bottom - 16 * legend_rows

    def at(i: int, v: float) -> tuple[float, float]:
        x = left + (i + 0.5) * (width - left - right) / len(xs)
        y = plot_bottom - (v - low) / (high - low) * (plot_bottom - top)
        return x, y

    draw.rectangle([left, top, width - right, plot_bottom], outline="black")
    for k in range(6):
        v = low + (high - low) * k / 5
        _, y = at(0, v)
        draw.line([left - 4, y, left, y], fill="black")
        draw.text((4, y - 6), _fmt(metric, v), fill="black", font=font)
    for i, x_value in enumerate(xs):
        x, _ = at(i, low)
        draw.text((x - 3 * len(x_value), plot_bottom + 6), x_value, fill="black", font=font)
    draw.text((width // 2 - 30, plot_bottom + 24), option, fill="black", font=font)
    draw.text((left, 12), f"{metric} against {option}: line through the mean over seeds, "
              "bar min..max, dots the seeds", fill="black", font=font)  # fmt: skip
    for s, (label, by_x) in enumerate(sorted(series.items())[: len(_COLORS)]):
        color = _COLORS[s]
        line = []
        for i, x_value in enumerate(xs):
            if x_value not in by_x:
                continue
            seeds = by_x[x_value]
            x, y_mean = at(i, sum(seeds) / len(seeds))
            x += (s - (len(series) - 1) / 2) * 6  # series side by side, not on top
            draw.line([x, at(i, min(seeds))[1], x, at(i, max(seeds))[1]], fill=color, width=2)
            for v in seeds:
                _, y = at(i, v)
                draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=color)
            line.append((x, y_mean))
        if len(line) > 1:
            draw.line(line, fill=color, width=2)
        y_legend = height - bottom + 20 + 16 * s - 16 * legend_rows + 16
        draw.rectangle([left, y_legend, left + 12, y_legend + 8], fill=color)
        draw.text((left + 18, y_legend - 2), label, fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    write_atomically(path, buffer.getvalue())
    return Path(path)
