"""Print a pytest-benchmark JSON file as Markdown tables for the README.

    python -m pytest benchmarks --benchmark --benchmark-json=bench.json
    python scripts/bench_table.py bench.json

One table per benchmark group: the median time per epoch (per pass of the 10,000 test
images for inference; rows timed on a slice are scaled up, as recorded in each
benchmark's extra_info) and the speed-up against NumPy and against PyTorch measured in
the same run. Then the machine and the versions.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def seconds_per_epoch(bench: dict) -> float:
    return bench["stats"]["median"] * bench.get("extra_info", {}).get("scale", 1.0)


def label(bench: dict) -> str:
    extra = bench.get("extra_info", {})
    backend = extra.get("backend", bench["name"])
    threads = extra.get("threads")
    name = backend if threads in (None, "") else f"{backend}, threads={threads}"
    rows, epoch = extra.get("rows"), extra.get("epoch_rows")
    if rows and epoch and rows != epoch:
        name += f" (timed on {rows:,} rows)"
    return name


def fmt_time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.3g} ms"


def ratio(reference: float | None, seconds: float) -> str:
    if reference is None:
        return "-"
    value = reference / seconds
    return f"{value:.3g}x"


def group_table(group: str, benches: list[dict]) -> list[str]:
    benches = sorted(benches, key=seconds_per_epoch)
    by_backend = {b.get("extra_info", {}).get("backend"): seconds_per_epoch(b) for b in benches}
    numpy_s, torch_s = by_backend.get("numpy"), by_backend.get("torch")
    unit = "per pass" if group.startswith("inference") else "per epoch"
    lines = [
        f"### {group}",
        "",
        f"| | median {unit} | rounds | vs NumPy | vs PyTorch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for bench in benches:
        s = seconds_per_epoch(bench)
        lines.append(
            f"| {label(bench)} | {fmt_time(s)} | {bench['stats']['rounds']} | "
            f"{ratio(numpy_s, s)} | {ratio(torch_s, s)} |"
        )
    return [*lines, ""]


def _both(peer, u8, f32) -> str:
    if peer is None or u8 is None or f32 is None:
        return "-"
    return f"{peer / u8:.2f}x, {peer / f32:.2f}x"


def grid_table(group: str, benches: list[dict]) -> list[str]:
    """The width x batch x input-type grid (benchmarks/test_bench_grid.py): the median of each
    contestant's per-round times, and fastmlp's speed-up against each peer of the same run."""
    lines = [
        f"### {group}",
        "",
        "| hidden : batch | fastmlp uint8 | fastmlp float32 | NumPy loop | PyTorch "
        "| vs NumPy (uint8, float32) | vs PyTorch (uint8, float32) | float32 / uint8 "
        "| whole fit() call, uint8 |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]

    def key(bench):
        extra = bench.get("extra_info", {})
        return (max(extra.get("hidden", [0])), extra.get("batch", 0))

    for bench in sorted(benches, key=key):
        extra = bench.get("extra_info", {})
        skip = extra.get("warmup_rounds", 0)
        med = {
            name: statistics.median(times[skip:] or times)
            for name, times in extra["seconds"].items()
            if times
        }
        u8, f32 = med.get("fastmlp uint8"), med.get("fastmlp float32")
        peers = [med.get("numpy loop"), med.get("pytorch")]

        cells = [fmt_time(v) if v is not None else "-" for v in (u8, f32, *peers)]
        lines.append(
            f"| {'-'.join(map(str, extra['hidden']))} : {extra['batch']} | "
            + " | ".join(cells)
            + f" | {_both(peers[0], u8, f32)} | {_both(peers[1], u8, f32)} | "
            + (f"{f32 / u8:.2f} |" if u8 and f32 else "- |")
            + (f" {fmt_time(med['fastmlp uint8 fit'])} |" if "fastmlp uint8 fit" in med else " - |")
        )
    rounds = {
        len(t) - b["extra_info"].get("warmup_rounds", 0)
        for b in benches
        for t in b["extra_info"]["seconds"].values()
    }
    lines.append("")
    lines.append(f"Medians of {', '.join(map(str, sorted(rounds)))} interleaved rounds; seconds "
                 "per 60,000-image epoch.")  # fmt: skip
    return [*lines, ""]


def inference_grid_table(group: str, benches: list[dict]) -> list[str]:
    """Inference of the test images per width (test_bench_grid.py::test_inference_grid)."""
    lines = [
        f"### {group}",
        "",
        "| hidden | fastmlp uint8 | fastmlp float32 | NumPy loop | PyTorch "
        "| vs NumPy (uint8, float32) | vs PyTorch (uint8, float32) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for bench in sorted(benches, key=lambda b: max(b["extra_info"]["hidden"])):
        extra = bench["extra_info"]
        skip = extra.get("warmup_rounds", 0)
        med = {k: statistics.median(v[skip:] or v) for k, v in extra["seconds"].items() if v}
        u8, f32 = med.get("fastmlp uint8"), med.get("fastmlp float32")
        peers = [med.get("numpy loop"), med.get("pytorch")]
        cells = [fmt_time(v) if v is not None else "-" for v in (u8, f32, *peers)]
        if f32 is None:  # a run from before float32 was timed: the uint8 ratio alone
            ratios = [f"{p / u8:.2f}x" if p and u8 else "-" for p in peers]
        else:
            ratios = [_both(p, u8, f32) for p in peers]
        lines.append(f"| {'-'.join(map(str, extra['hidden']))} | " + " | ".join(cells + ratios)
                     + " |")  # fmt: skip
    return [*lines, ""]


def machine_lines(data: dict) -> list[str]:
    info = data.get("machine_info", {})
    cpu = info.get("cpu", {})
    extra = info.get("fastmlp", {})
    versions = ", ".join(f"{k} {v}" for k, v in extra.get("versions", {}).items() if v)
    lines = [
        "### Machine",
        "",
        f"- CPU: {cpu.get('brand_raw', info.get('processor', '?'))}, "
        f"{extra.get('cores', '?')} cores (Numba target {extra.get('numba_cpu', '?')}, "
        f"{extra.get('numba_threads', '?')} threads)",
        f"- {versions}" if versions else f"- Python {info.get('python_version', '?')}",
        f"- data: {extra.get('data', '?')}; full run: {extra.get('full', '?')}",
        f"- OpenBLAS environment: {extra.get('openblas_env') or 'none set'}; "
        f"BLAS in use: {extra.get('blas', '?')}",
        f"- run: {data.get('datetime', '?')}",
    ]
    commit = data.get("commit_info", {})
    if commit.get("id"):
        lines.append(f"- commit: {commit['id'][:12]}{' (dirty)' if commit.get('dirty') else ''}")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="file written by --benchmark-json")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text())
    groups: dict[str, list[dict]] = {}
    for bench in data.get("benchmarks", []):
        groups.setdefault(bench.get("group") or "ungrouped", []).append(bench)
    if not groups:
        print(f"{args.json}: no benchmarks", file=sys.stderr)
        return 1
    out: list[str] = []
    for group in sorted(groups, key=lambda g: (not g.startswith("train"), g)):
        if group.startswith("grid inference"):
            out += inference_grid_table(group, groups[group])
        elif group.startswith("grid"):
            out += grid_table(group, groups[group])
        else:
            out += group_table(group, groups[group])
    out += machine_lines(data)
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
