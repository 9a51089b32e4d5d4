"""The numba backend compiles, trains and predicts for other CPUs than this one.

The kernels' compress of a row's non-zero entries is one instruction with AVX-512, a
table and a permute with AVX2 (kernels.numba.compress), LLVM's expansion elsewhere, and
LLVM's expansion of a float32 compress once aborted the whole process (an assertion
inside LLVM, no Python error) on the first `fit`: on any AVX2 laptop, and under
``NUMBA_CPU_NAME=generic`` (Numba's setting for a cache shared between machines). The
development machines have been of both kinds (AMD EPYC Zen 5 with AVX-512, Zen 3 without). Each test compiles, in a child process
with a cache of its own, for another CPU than this one (Numba's ``NUMBA_CPU_NAME`` and
``NUMBA_CPU_FEATURES``), trains a small MNIST-like set with and without elastic
distortions, predicts, and checks the outputs against this process's (the same float32
arithmetic, so equal to rounding).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent

# A Haswell's features (AVX2 and FMA, no AVX-512), as LLVM names them: Numba adds the
# host's own features to a NUMBA_CPU_NAME unless NUMBA_CPU_FEATURES says which.
HASWELL = ("+64bit,+avx,+avx2,+bmi,+bmi2,+cmov,+cx16,+f16c,+fma,+fsgsbase,+lzcnt,+mmx,"
           "+movbe,+pclmul,+popcnt,+rdrnd,+sse,+sse2,+sse3,+sse4.1,+sse4.2,+ssse3,+xsave,"
           "+xsaveopt")  # fmt: skip
# x86-64's baseline, SSE2 only: LLVM's expansion of the compress.
SSE2 = "+64bit,+cmov,+cx8,+fxsr,+mmx,+sse,+sse2"
TARGETS = {"avx2": {"NUMBA_CPU_NAME": "haswell", "NUMBA_CPU_FEATURES": HASWELL},
           "sse2": {"NUMBA_CPU_NAME": "x86-64", "NUMBA_CPU_FEATURES": SSE2},
           "generic": {"NUMBA_CPU_NAME": "generic"}}  # fmt: skip

RUN = """
import json, sys
import numpy as np
from fastmlp import MLP
rng = np.random.default_rng(0)
X = ((rng.random((640, 784)) < 0.2) * rng.integers(1, 256, (640, 784))).astype(np.uint8)
y = rng.integers(0, 10, 640)
out = {}
for augment in (None, "elastic"):
    model = MLP((784, 16, 16, 10), seed=0)
    model.fit(X[:512], y[:512], epochs=2, batch_size=32, lr=0.1, augment=augment,
              progress=False, threads=1)
    out[str(augment)] = model.predict_proba(X[512:]).tolist()
with open(sys.argv[1], "w") as f:
    json.dump(out, f)
"""


def outputs(path, env=None):
    """RUN's outputs, here (env None) or in a child process with the environment env."""
    if env is None:
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(sys, "argv", ["-c", str(path)])
            exec(RUN, {"__name__": "__main__"})
    else:
        done = subprocess.run([sys.executable, "-c", RUN, str(path)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=600)  # fmt: skip
        assert done.returncode == 0, (
            f"the child process ended with {done.returncode}: {done.stderr[-2000:]}"
        )
    with open(path) as f:
        return {key: np.array(value, np.float32) for key, value in json.load(f).items()}


@pytest.fixture(scope="module")
def here(tmp_path_factory):
    return outputs(tmp_path_factory.mktemp("here") / "outputs.json")


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_trains_and_predicts_on_a_cpu_without_avx512(target, here, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_CPU")}
    env.update(TARGETS[target], NUMBA_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]))  # fmt: skip
    there = outputs(tmp_path / "outputs.json", env)
    assert sorted(there) == sorted(here)
    for key in here:
        np.testing.assert_allclose(there[key], here[key], rtol=1e-4, atol=1e-6, err_msg=key)
