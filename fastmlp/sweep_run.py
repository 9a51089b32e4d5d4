"""Running a sweep: local worker processes or a Dask cluster, and the `fastmlp sweep` command."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from fastmlp.sweep import (
    METRICS,
    OPTIONS,
    Results,
    SweepError,
    grid_from,
    load_config,
    make_trials,
    parse_seeds,
)
from fastmlp.sweep_worker import run_trial, start_worker, warm_up


def run_sweep(
    trials: list[dict[str, Any]],
    out: str | os.PathLike,
    *,
    data_dir: str | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    retry_failed: bool = False,
    echo: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Run the trials not yet in ``out``'s results; return this sweep's rows (old and new).

    ``scheduler`` (a Dask scheduler address, or a ``distributed.Client``) sends the trials
    to that cluster's workers; otherwise ``workers`` local processes (default: one per core).
    The data folder and ``out`` must be reachable at the same path from every worker.
    """
    out = os.path.abspath(os.fspath(out))
    option_names = sorted({name for trial in trials for name in trial["options"]})
    results = Results(out, option_names)
    finished = {"ok", "failed"} if not retry_failed else {"ok"}
    done = {row["trial"] for row in results.rows() if row.get("status") in finished}
    todo = [trial for trial in trials if trial["trial"] not in done]
    echo(f"{len(trials)} trials: {len(trials) - len(todo)} already in {out}, {len(todo)} to run")
    if todo:
        backends = sorted({t["options"].get("backend", "numba") for t in todo} & {"numba"})
        if scheduler is not None:
            rows = _on_dask(todo, data_dir, out, scheduler, backends, echo)
        else:
            rows = _on_local_processes(todo, data_dir, out, workers, backends, echo)
        for count, row in enumerate(rows, 1):
            results.add(row)
            echo(f"[{count}/{len(todo)}] {_describe(row)}")
    latest = {row["trial"]: row for row in results.rows()}
    return [latest[t["trial"]] for t in trials if t["trial"] in latest]


def _describe(row: dict[str, Any]) -> str:
    options = " ".join(f"{k}={row[k]}" for k in sorted(row) if k in OPTIONS)
    if row.get("status") != "ok":
        return f"{row['trial']} {options} seed={row['seed']}: failed: {row.get('error')}"
    return (
        f"{row['trial']} {options} seed={row['seed']}: test accuracy "
        f"{row['test_accuracy']:.2%} ({row['seconds']:.1f} s, pid {row['pid']})"
    )


def _on_local_processes(
    todo: list[dict], data_dir: str | None, out: str, workers: int | None, backends: list[str],
    echo: Callable[[str], None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = min(workers or os.cpu_count() or 1, len(todo))
    # spawn: a fresh interpreter per worker, nothing inherited from the driver's threads.
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        # One warm-up per worker, all started at once (a pool spawns a process per task
        # waiting): they load the compiled kernels in parallel, or take turns where the
        # cache is not known to be complete, so nothing compiles twice (sweep_worker).
        task, args = (warm_up, (backends,)) if backends else (start_worker, ())
        reports = [future.result() for future in
                   [pool.submit(task, *args) for _ in range(workers)]]  # fmt: skip
        if backends:
            _report_warm_up(reports, echo)
        futures = [pool.submit(run_trial, trial, data_dir, out) for trial in todo]
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise


def _on_dask(
    todo: list[dict], data_dir: str | None, out: str, scheduler: Any, backends: list[str],
    echo: Callable[[str], None],
) -> Iterator[dict[str, Any]]:  # fmt: skip
    try:
        from distributed import Client, as_completed
    except ImportError:
        raise SweepError(
            "--scheduler needs Dask: pip install 'dask[distributed]' (or fastmlp[dask])"
        ) from None
    client = scheduler if isinstance(scheduler, Client) else Client(scheduler, timeout="30s")
    try:
        workers = _scheduler_workers(client)
        if not workers:
            raise SweepError(f"the Dask scheduler {client.scheduler.address} has no workers")
        if backends:  # every worker at once; those of one machine share its cache
            warm = [client.submit(warm_up, backends, workers=[a], allow_other_workers=False,
                                  pure=False) for a in workers]  # fmt: skip
            _report_warm_up(client.gather(warm), echo)
        futures = client.map(run_trial, todo, data_dir=data_dir, out=out, pure=False)
        try:
            for future in as_completed(futures):
                yield future.result()
        except BaseException:
            client.cancel(futures)
            raise
    finally:
        if client is not scheduler:
            client.close()


def _scheduler_workers(client: Any) -> dict[str, Any]:
    try:  # recent distributed reports 5 workers unless asked for all
        return client.scheduler_info(n_workers=-1)["workers"]
    except TypeError:
        return client.scheduler_info()["workers"]


def _report_warm_up(reports: list[dict[str, Any]], echo: Callable[[str], None]) -> None:
    processes = len({report["pid"] for report in reports})
    echo(
        f"kernels ready in {max(r['seconds'] for r in reports):.1f} s on {processes} "
        f"worker(s) ({sum(r['compiled'] for r in reports)} compiled, "
        f"{sum(r['cache_hits'] for r in reports)} from the cache)"
    )


# --- the command -------------------------------------------------------------------------------


def add_sweep_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "sweep",
        help="train many models over a grid of options and seeds, in parallel",
        description=(
            "Run `fastmlp train` over every combination of the options given (each flag "
            "takes several values, e.g. --lr 0.05,0.1 --hidden 16,16 32,32) and every seed, "
            "in local worker processes or on a Dask cluster. Results are appended to "
            "OUT/results.csv and OUT/results.jsonl as trials finish; rerunning skips them."
        ),
    )
    p.add_argument("--config", type=Path, help="a TOML sweep file (flags override its options)")
    for name in OPTIONS:
        p.add_argument(f"--{name.replace('_', '-')}", nargs="+", metavar="V",
                       help="space- or comma-separated values" if name != "hidden"
                       else "space-separated widths, e.g. 16,16 32,32")  # fmt: skip
    p.add_argument("--seeds", help="seeds, e.g. 0-4 or 0,1,7 (default 0)")
    p.add_argument("--samples", type=int, help="run a seeded random sample of this many points")
    p.add_argument("--sample-seed", type=int, help="seed of that sample (default 0)")
    p.add_argument("--out", type=Path, default=Path("runs") / "sweep", help="results folder")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    p.add_argument("--scheduler", help="Dask scheduler address, e.g. tcp://10.0.0.5:8786")
    p.add_argument("--data-dir", help="data folder (the same path on every worker)")
    p.add_argument("--retry-failed", action="store_true", help="run failed trials again")
    p.add_argument("--metric", choices=METRICS, default="test_accuracy", help="for the summary")
    p.add_argument("--plot-option", help="swept option on the picture's x axis")
    p.add_argument("--top", type=int, default=5, help="best settings to list")
    p.set_defaults(handler=cmd_sweep)


def cmd_sweep(args: argparse.Namespace) -> int:
    from fastmlp.sweep_report import draw_sweep, summary_lines

    config = load_config(args.config) if args.config else {}
    options = dict(config.get("options", {}))
    for name in OPTIONS:
        values = getattr(args, name)
        if values:
            options[name] = values if name == "hidden" else [
                v for text in values for v in text.split(",") if v]  # fmt: skip
    if not options:
        raise SweepError("nothing to sweep: give options such as --lr 0.05,0.1 or --config")
    seeds = parse_seeds(args.seeds if args.seeds is not None else config.get("seeds", 0))
    samples = args.samples if args.samples is not None else config.get("samples")
    sample_seed = args.sample_seed if args.sample_seed is not None else config.get(
        "sample_seed", 0)  # fmt: skip
    if args.workers is not None and args.workers < 1:
        raise SweepError(f"--workers must be at least 1, got {args.workers}")
    trials = make_trials(grid_from(options), seeds, samples, sample_seed)
    rows = run_sweep(
        trials,
        args.out,
        data_dir=args.data_dir,
        workers=args.workers,
        scheduler=args.scheduler,
        retry_failed=args.retry_failed,
        echo=lambda line: print(line, flush=True),
    )
    print("\n".join(summary_lines(rows, args.metric, args.top)))
    picture = draw_sweep(rows, args.out / f"{args.metric}.png", args.metric, args.plot_option)
    if picture is not None:
        print(f"picture: {picture}")
    failed = sum(row.get("status") != "ok" for row in rows)
    if failed:
        print(
            f"{failed} of {len(rows)} trials failed (see the error column); running the sweep "
            "again skips them, with --retry-failed it runs them again",
            file=sys.stderr,
        )
    return 0
