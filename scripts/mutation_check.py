#!/usr/bin/env python
"""Plant typical bugs one at a time in a scratch copy of the project and see if the tests catch them.

    FASTMLP_DATA=../shared/mnist nice -n 10 python scripts/mutation_check.py [--only NAME ...]
    python scripts/mutation_check.py --check    # seconds: can every bug still be planted?

The copy holds the working tree as it is (tracked files and untracked ones git does not
ignore). First the relevant tests run unmodified and must pass; then each bug is planted
(a textual edit), the tests relevant to it run (with one Numba cache shared by every
run, warm after the first: a stale compiled kernel would hide a planted kernel bug),
and the file is restored. A bug is "caught" when at least one test fails; the first
failing tests are listed. Slow (minutes: planted kernel bugs are compiled afresh), so
not part of CI.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Bug:
    name: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (text as it is, text with the bug): each found once
    tests: tuple[str, ...]  # pytest arguments, relative to the project root


BUGS = [
    Bug("flipped gradient sign (numba softmax cross-entropy), warm cache",
        "kernels/numba/heads.py",
        (("sc = vsplat(scale)\n", "sc = vsplat(-scale)\n"),
         ("d[row + label] -= scale", "d[row + label] += scale")),
        ("tests/test_kernels_gradcheck.py", "tests/test_kernels_agree.py")),
    Bug("dropped bias gradient (NumPy backend)",
        "kernels/numpy_backend.py",
        (("np.sum(dout, axis=0, out=dbias)", "dbias[...] = 0"),),
        ("tests/test_training.py",)),
    Bug("dropped first-layer bias gradient (numba)",
        "kernels/numba/passes.py",
        (("    bias_backward(grad, first.boff, delta, first.aoff, arow, n, first.stride)\n",
          "    pass  # bias gradient dropped\n"),),
        ("tests/test_kernels_gradcheck.py", "tests/test_training.py")),
    Bug("transposed confusion matrix (MLP.evaluate)",
        "fastmlp/model.py",
        (("np.add.at(confusion, (true, predicted), 1)", "np.add.at(confusion, (predicted, true), 1)"),),
        ("tests/test_confusion.py",)),
    Bug("transposed confusion table (fastmlp evaluate)",
        "fastmlp/commands.py",
        (("for i, row in enumerate(matrix):", "for i, row in enumerate(matrix.T):"),),
        ("tests/test_confusion.py",)),
    Bug("transposed confusion matrix picture",
        "fastmlp/pictures.py",
        (("colour = tuple(int(c) for c in shades[i, j])",
          "colour = tuple(int(c) for c in shades[j, i])"),),
        ("tests/test_picture_content.py",)),
    Bug("misclassified picture shows correctly classified digits",
        "fastmlp/pictures.py",
        (("wrong = np.flatnonzero(predictions != labels)\n",
          "wrong = np.flatnonzero(predictions == labels)\n"),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("misclassified captions shifted by one",
        "fastmlp/pictures.py",
        (("    for i in wrong:\n        guess = f\"pred {predictions[i]}\"",
          "    for i in np.roll(wrong, 1):\n        guess = f\"pred {predictions[i]}\""),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("sample digit captions shifted by one",
        "fastmlp/pictures.py",
        (("captions = [[(str(labels[i]), INK)] for i in range(count)]",
          "captions = [[(str(labels[(i + 1) % count]), INK)] for i in range(count)]"),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("transposed weight tiles",
        "fastmlp/pictures.py",
        (("rgb = _colormap(row.reshape(side, side) /", "rgb = _colormap(row.reshape(side, side).T /"),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("training curves drawn backwards",
        "fastmlp/plots.py",
        (("axes.plot(x, values, marker=marker", "axes.plot(x, values[::-1], marker=marker"),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("decision boundary upside down",
        "fastmlp/plots.py",
        (("ys = centre[1] + half - (np.arange(size) + 0.5) * step",
          "ys = centre[1] - half + (np.arange(size) + 0.5) * step"),),
        ("tests/test_picture_content.py", "tests/test_pictures.py")),
    Bug("numba threaded path never taken",
        "kernels/numba/network.py",
        (("    if threads > 1:\n        numba.set_num_threads(threads)",
          "    loop, threads = \"serial\", 1\n    if threads > 1:\n        numba.set_num_threads(threads)"),),
        ("tests/test_threads.py", "tests/test_numba_backend.py")),
    Bug("swapped labels 3 and 5 in the loader",
        "fastmlp/data.py",
        (('        arrays["train-labels"],\n',
          '        (arrays["train-labels"] + 2 * (arrays["train-labels"] == 3)\n'
          '         - 2 * (arrays["train-labels"] == 5)).astype(np.uint8),\n'),),
        ("tests/test_mnist_real.py", "tests/test_data.py")),
    Bug("preprocessed digit put in the corner",
        "fastmlp/preprocess.py",
        (("field[top : top + height, left : left + width] = small",
          "field[:height, :width] = small"),),
        ("tests/test_preprocess.py",)),
    Bug("preprocessed digit centred by its box, not its centre of mass",
        "fastmlp/preprocess.py",
        (("cy = (small.sum(axis=1) @ np.arange(height)) / total",
          "cy = (height - 1) / 2"),
         ("cx = (small.sum(axis=0) @ np.arange(width)) / total",
          "cx = (width - 1) / 2")),
        ("tests/test_preprocess.py",)),
    Bug("wrong Adam bias correction (NumPy backend)",
        "kernels/numpy_backend.py",
        (("correction1 = 1.0 - beta1 ** int(step)", "correction1 = 1.0 - beta1 ** int(step + 1)"),),
        ("tests/test_kernels_agree.py",)),
    Bug("last batch dropped (NumPy backend)",
        "kernels/numpy_backend.py",
        (("rows = order[j * batch_size : (j + 1) * batch_size]",
          "rows = order[j * batch_size : (j + 1) * batch_size] if (j + 1) * batch_size <= len(order) else order[:0]"),),
        ("tests/test_kernels_agree.py",)),
    Bug("model file skips the last tensor",
        "fastmlp/model.py",
        (("write_model_file(path, self.state_dict(layer_names), metadata,",
          "write_model_file(path, dict(list(self.state_dict(layer_names).items())[:-1]), metadata,"),),
        ("tests/test_modelfile.py",)),
    Bug("IDX reader accepts trailing bytes",
        "fastmlp/idx.py",
        (("    if len(data) != claimed:\n", "    data = data[:claimed]\n    if len(data) != claimed:\n"),),
        ("tests/test_idx.py",)),
    Bug("stale compiled kernels (cache not keyed by the sources)",
        "kernels/numba/__init__.py",
        (("import kernels.numba_cache  # noqa: F401, I001\n", "# import kernels.numba_cache removed\n"),),
        ("tests/test_numba_cache.py",)),
    Bug("CI lets the torch install fail",
        ".ci/run",
        (("pip install torch==2.13.0\n", "pip install torch==2.13.0 || echo 'no torch'\n"),),
        ("tests/test_ci_referee.py",)),
    Bug("CI skips instead of failing without torch",
        "tests/referee.py",
        (("if require_torch() and TORCH_SKIP", "if False and TORCH_SKIP"),),
        ("tests/test_ci_referee.py",)),
    Bug("spread lane split loses each thread's last input column (transpose_rows)",
        "kernels/numba/work.py",
        (("            if c0 <= c < c1:\n", "            if c0 <= c < c1 - 1:\n"),),
        ("tests/test_threads.py",)),
    Bug("threads leave a meeting before the last one arrives (barrier.meet)",
        "kernels/numba/barrier.py",
        (("    while load_acquire(sync, 0) < target:\n",
          "    while load_acquire(sync, 0) < target - 1:\n"),),
        ("tests/test_threads.py",)),
    Bug("one-row tiles: every tile but the last starts again from the bias "
        "(tiles.sparse_forward_tiles)",
        "kernels/numba/tiles.py",
        (("                    if t == 0:\n", "                    if t < n_tiles - 1:\n"),),
        ("tests/test_inference.py",)),
    Bug("training's first-layer tiles drop each row's last entry (tiles.row_tiles)",
        "kernels/numba/tiles.py",
        (("        tiles[b, n_tiles] = k1\n", "        tiles[b, n_tiles] = max(k, k1 - 1)\n"),),
        ("tests/test_kernels_wide.py",)),
    Bug("BLAS layers compute their outputs rounded down to 16 lanes (net.live_lanes)",
        "kernels/numba/net.py",
        (("    return (n_out + LANES - 1) // LANES * LANES\n",
          "    return n_out // LANES * LANES\n"),),
        ("tests/test_kernels_wide.py",)),
    Bug("AVX2 compress: every half's column numbers from 0 (compress._append)",
        "kernels/numba/compress.py",
        (("ir.Constant(_V8, [8 * half] * 8)", "ir.Constant(_V8, [0] * 8)"),),
        ("tests/test_compress.py", "tests/test_portable_targets.py::"
         "test_trains_and_predicts_on_a_cpu_without_avx512[avx2]")),
]  # fmt: skip


def unplantable(bug: Bug, root: Path) -> str | None:
    """Why ``bug`` cannot be planted in the tree at ``root`` (None: every edit's text is
    found exactly once in its file)."""
    path = root / bug.path
    if not path.is_file():
        return f"no file {bug.path}"
    text = path.read_text()
    for old, _ in bug.edits:
        count = text.count(old)
        if count != 1:
            return f"{old.strip()!r} found {count} times in {bug.path}"
    return None


def check(bugs: list[Bug]) -> int:
    """Only verify that every bug can be planted in this working tree; no tests run."""
    bad = 0
    for bug in bugs:
        why = unplantable(bug, ROOT)
        bad += why is not None
        print(f"{'ok' if why is None else 'BAD':<7} {bug.name}" + (f": {why}" if why else ""))
    print(f"{len(bugs) - bad} of {len(bugs)} bugs can be planted")
    return 1 if bad else 0


def scratch_copy(dest: Path) -> None:
    """The working tree as it is: tracked files and untracked ones git does not ignore."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def run_tests(copy: Path, tests: tuple[str, ...], env: dict[str, str]) -> tuple[int, list[str], float]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--maxfail=3",
         "-o", "addopts=", "-rfE", *tests],
        cwd=copy, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    failed = [line.split(" - ")[0].split(" ", 1)[1] for line in done.stdout.splitlines()
              if re.match(r"^(FAILED|ERROR) ", line)]  # fmt: skip
    if done.returncode not in (0, 1):
        failed = failed or [done.stdout.strip().splitlines()[-1] if done.stdout.strip() else "?"]
    return done.returncode, failed, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", help="run only the bugs whose name contains these")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copy")
    parser.add_argument("--check", action="store_true",
                        help="only check that each edit's text is found exactly once; run no tests")  # fmt: skip
    args = parser.parse_args(argv)
    bugs = [b for b in BUGS if not args.only or any(o in b.name for o in args.only)]
    if not bugs:
        print("no bug matches --only", *args.only)
        return 2
    if args.check:
        return check(bugs)

    work = Path(tempfile.mkdtemp(prefix="fastmlp-mutants-"))
    copy = work / "project"
    scratch_copy(copy)
    env = dict(os.environ, PYTHONPATH=str(copy), NUMBA_CACHE_DIR=str(work / "numba-cache"))
    env.pop("CI", None)  # a missing torch or MNIST is a skip here, as on a developer's machine
    try:
        tests = tuple(sorted({t for b in bugs for t in b.tests}))
        code, failed, seconds = run_tests(copy, tests, env)
        print(f"baseline: {len(tests)} test files, {seconds:.0f} s, "
              f"{'pass' if code == 0 else 'FAIL'}")  # fmt: skip
        if code != 0:
            print("the unmodified copy fails its tests; no bug can be judged:", *failed, sep="\n  ")
            return 2
        caught = 0
        for bug in bugs:
            why = unplantable(bug, copy)
            if why is not None:
                print(f"n/a     {bug.name}: not planted, the code changed ({why})")
                continue
            path = copy / bug.path
            original = path.read_text()
            text = original
            for old, new in bug.edits:
                text = text.replace(old, new)
            path.write_text(text)
            try:
                code, failed, seconds = run_tests(copy, bug.tests, env)
            finally:
                path.write_text(original)
            if code == 0:
                print(f"MISSED  {bug.name} ({seconds:.0f} s): {' '.join(bug.tests)} all pass")
            else:
                caught += 1
                print(f"caught  {bug.name} ({seconds:.0f} s) by:", *failed[:3], sep="\n          ")
        print(f"{caught} of {len(bugs)} planted bugs caught")
        return 0 if caught == len(bugs) else 1
    finally:
        if args.keep:
            print(f"scratch copy kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
