"""A pytest plugin: where CI runs, a test may not skip for want of PyTorch or MNIST.

PyTorch is the outside referee of the kernels and MNIST the real data; a CI run where
either went missing would otherwise be green with hundreds of tests skipped. Under
``CI`` (set to anything but ``0``/``false``), ``FASTMLP_REQUIRE_TORCH=1`` or
``FASTMLP_REQUIRE_DATA=1`` (both set by ``.ci/run``) such a skip is turned into a
failure that says why. Loaded by the project's root ``conftest.py``.
"""

from __future__ import annotations

import os
import re

import pytest

# pytest.importorskip's reason for torch and the modules that need it, and the mnist
# fixture's reason (tests/conftest.py).
TORCH_SKIP = re.compile(r"could not import '(torch|safetensors\.torch)(\.[\w.]+)?'")
DATA_SKIP = re.compile(r"^MNIST not found")


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require_torch() -> bool:
    return os.environ.get("FASTMLP_REQUIRE_TORCH") == "1" or in_ci()


def require_data() -> bool:
    return os.environ.get("FASTMLP_REQUIRE_DATA") == "1" or in_ci()


def _reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    reason = _reason(report)
    if require_torch() and TORCH_SKIP.search(reason):
        what = "PyTorch (the referee) is required here (CI or FASTMLP_REQUIRE_TORCH=1)"
    elif require_data() and DATA_SKIP.search(reason):
        what = "MNIST is required here (CI or FASTMLP_REQUIRE_DATA=1)"
    else:
        return
    report.outcome = "failed"
    report.longrepr = f"{what}, but the test would skip: {reason}"
