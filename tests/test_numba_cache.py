"""The compiled kernels can never be stale: editing any kernel file gives a fresh cache.

Numba checks a cached function against its own file only, so a kernel compiled into a
caller in another file used to keep running its old code from a warm cache.
kernels/numba_cache.py names the cache folder by a hash of every kernel source; here a
copy of the kernels package is run, edited, and run again on the same warm cache.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import kernels
from kernels import numba_cache

KERNELS = Path(kernels.__file__).resolve().parent

# A sigmoid network's forward pass and gradient, computed by the (copied) numba backend.
SCRIPT = """
import json, sys
import numpy as np
import kernels
from kernels import Net
nb = kernels.backend("numba")
net = Net((3, 4, 2), "sigmoid", "softmax", "cross_entropy")
params = np.linspace(-1.0, 1.0, net.n_params).astype(np.float32)
X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]], np.float32)
out = nb.forward(params, net, X)
loss, grads = nb.loss_and_grads(params, net, X, np.array([0, 1]))
print(json.dumps({"file": kernels.__file__, "out": out.tolist(), "loss": float(loss)}))
"""


def reference_forward(flip: bool) -> np.ndarray:
    """The same network in NumPy; ``flip`` computes sigmoid(-z), the planted edit."""
    params = np.linspace(-1.0, 1.0, 3 * 4 + 4 + 4 * 2 + 2).astype(np.float64)
    w1, b1 = params[:12].reshape(4, 3), params[12:16]
    w2, b2 = params[16:24].reshape(2, 4), params[24:26]
    X = np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])
    z = X @ w1.T + b1
    h = 1.0 / (1.0 + np.exp(z if flip else -z))
    logits = h @ w2.T + b2
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def run_copy(root: Path, cache_parent: Path) -> dict:
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_parent))
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=root, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(result["file"]).resolve().parent == root / "kernels"  # the copy ran, not ours
    return result


def plant_flipped_sigmoid(package: Path) -> list[Path]:
    """Make every numba sigmoid compute sigmoid(-x): one line inserted in its body."""
    edited = []
    for path in sorted(package.rglob("*.py")):
        text = path.read_text()
        if "numba" not in text:
            continue
        new = re.sub(r"(\n(\s*)def _?sigmoid\((\w+)\):\n)", r"\1\2    \3 = -\3\n", text)
        if new != text:
            path.write_text(new)
            edited.append(path)
    return edited


@pytest.mark.slow
def test_an_edited_kernel_takes_effect_on_a_warm_cache(tmp_path):
    root = tmp_path / "project"
    shutil.copytree(KERNELS, root / "kernels", ignore=shutil.ignore_patterns("__pycache__"))
    cache = tmp_path / "numba-cache"

    first = run_copy(root, cache)
    np.testing.assert_allclose(first["out"], reference_forward(flip=False), rtol=1e-5)
    assert list(cache.rglob("*.nbi")), "the first run left no compiled cache to be stale"

    edited = plant_flipped_sigmoid(root / "kernels")
    assert edited, "no numba sigmoid found to edit in the kernels package"
    second = run_copy(root, cache)
    np.testing.assert_allclose(
        second["out"], reference_forward(flip=True), rtol=1e-5,
        err_msg="the edited kernel did not take effect: stale compiled code came from the cache",
    )  # fmt: skip


def test_the_cache_key_changes_with_any_kernel_file(tmp_path):
    package = tmp_path / "kernels"
    shutil.copytree(KERNELS, package, ignore=shutil.ignore_patterns("__pycache__"))
    before = numba_cache.source_hash(package)
    assert numba_cache.source_hash(package) == before  # a key, not a clock
    for path in sorted(package.rglob("*.py")):
        original = path.read_bytes()
        path.write_bytes(original + b"# edited\n")
        assert numba_cache.source_hash(package) != before, f"editing {path.name} kept the key"
        path.write_bytes(original)
    assert numba_cache.source_hash(package) == before


def test_the_numba_backend_compiles_into_the_keyed_folder_under_numba_cache_dir(tmp_path):
    # Where every cached kernel of the backend's modules will be written.
    script = (
        "import json, sys, numba, kernels\n"
        "kernels.backend('numba')\n"
        "from kernels import numba_cache\n"
        "paths = sorted({f._cache._cache_path for name, m in list(sys.modules.items())\n"
        "                if name.startswith('kernels') for f in vars(m).values()\n"
        "                if isinstance(getattr(f, '_cache', None), numba.core.caching.Cache)})\n"
        "print(json.dumps([numba.config.CACHE_DIR, numba_cache.source_hash(), paths]))\n"
    )
    env = dict(os.environ, NUMBA_CACHE_DIR=str(tmp_path / "mine"))
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    folder, key, compiled_into = json.loads(done.stdout.strip().splitlines()[-1])
    assert Path(folder) == tmp_path / "mine" / f"kernels-{key}"  # the user's folder is the parent
    assert compiled_into, "no cached numba kernel found in the kernels package"
    for path in compiled_into:
        assert Path(path).is_relative_to(folder), f"a kernel is cached outside the keyed folder: {path}"
