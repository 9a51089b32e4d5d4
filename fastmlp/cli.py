"""The ``fastmlp`` command.

Each subcommand is two small functions: ``add_<name>_parser(subparsers)``, which
declares its arguments and sets ``handler=cmd_<name>``, and ``cmd_<name>(args) -> int``,
which does the work. To add one, write both and list the first in :data:`SUBCOMMANDS`.
Heavy imports (Numba, the kernels) belong inside the ``cmd_`` functions, so that
``fastmlp info`` and ``fastmlp --help`` stay quick.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from fastmlp.commands import add_evaluate_parser, add_predict_parser, add_train_parser
from fastmlp.serve import add_serve_parser
from fastmlp.sweep_run import add_sweep_parser

__all__ = ["build_parser", "main", "cmd_download", "cmd_info"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, like the command's other errors."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')"
        self.exit(2, f"fastmlp: error: {message}{hint}\n")


def cmd_download(args: argparse.Namespace) -> int:
    """``fastmlp download``: fetch the MNIST files missing from the data folder."""
    from fastmlp.data import data_info
    from fastmlp.download import download_mnist

    folder = download_mnist(args.data_dir, mirrors=args.mirror or None, progress=not args.quiet)
    if not args.quiet:
        print("\n".join(data_info(folder).lines()))
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    """``fastmlp info``: versions, and where the data is and which files are there."""
    import platform

    import fastmlp
    from fastmlp.data import data_info

    print(f"fastmlp {fastmlp.__version__}")
    print(f"python  {platform.python_version()} ({sys.executable})")
    # Package metadata rather than imports: importing numba alone costs a good part
    # of a second, which `info` has no use for.
    print(f"numpy   {_version('numpy')}")
    print(f"numba   {_version('numba')}")
    print("\n".join(data_info(args.data_dir).lines()))
    return 0


def add_download_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "download",
        help="download MNIST into the data folder",
        description=(
            "Download the MNIST files missing from the data folder (--data-dir, else "
            "$FASTMLP_DATA, else the user cache), checking each one's sha256."
        ),
    )
    p.add_argument("--data-dir", help="folder to download into (default: the data search path)")
    p.add_argument(
        "--mirror",
        action="append",
        metavar="URL",
        help="base URL to try (repeatable; default: $FASTMLP_MNIST_MIRRORS, else public mirrors)",
    )
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(handler=cmd_download)


def add_info_parser(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "info", help="versions, and where the data is", description=cmd_info.__doc__
    )
    p.add_argument("--data-dir", help="data folder to report on (default: the data search path)")
    p.set_defaults(handler=cmd_info)


#: The subcommands, in the order ``fastmlp --help`` lists them.
SUBCOMMANDS: list[Callable[[Any], None]] = [
    add_train_parser,
    add_evaluate_parser,
    add_predict_parser,
    add_sweep_parser,
    add_serve_parser,
    add_download_parser,
    add_info_parser,
]


def build_parser() -> argparse.ArgumentParser:
    """The ``fastmlp`` argument parser, with one subparser per entry of SUBCOMMANDS."""
    import fastmlp

    parser = _Parser(
        prog="fastmlp",
        description="Train small multilayer perceptrons on MNIST, fast, on a CPU.",
    )
    parser.add_argument("--version", action="version", version=f"fastmlp {fastmlp.__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastmlp`` command; returns the exit status.

    Expected failures (bad arguments, missing or malformed data, files that cannot
    be read or written, too little memory, Ctrl-C, SIGTERM) print one
    ``fastmlp: error: ...`` line on stderr and give a non-zero status, never a
    traceback. SIGTERM unwinds like Ctrl-C, so no temporary file is left behind, but
    saves nothing: it exits with 143, as a process killed by it would.
    """
    from fastmlp.files import Terminated, cleanup_on_sigterm
    from fastmlp.idx import IDXError

    swallowed = _InterruptWatch()
    try:
        with cleanup_on_sigterm(), swallowed:
            args = build_parser().parse_args(argv)
            return args.handler(args)
    except Terminated as exc:
        _fail("terminated (SIGTERM); nothing was saved")
        return exc.code
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except KeyboardInterrupt:
        _fail("interrupted")
        return 130
    except MemoryError:
        _fail("out of memory (try a smaller model, batch or data set)")
        return 1
    except (IDXError, OSError, ValueError) as exc:  # MissingDataError is an OSError
        _fail(str(exc) or type(exc).__name__)
        return 1
    except Exception as exc:
        # Ctrl-C inside a library's own error handling (Numba compiling the kernels on
        # a first run) can surface as that library's error: still an interruption.
        if swallowed.seen or _caused_by_interrupt(exc):
            _fail("interrupted")
            return 130
        raise


class _InterruptWatch:
    """Notes a Ctrl-C that a C callback swallowed, instead of printing its traceback.

    Ctrl-C while Numba compiles can land in LLVM's object-cache callback: ctypes reports
    it as "Exception ignored" (a traceback of its own) and Numba then fails with an
    unrelated RuntimeError. Seen here, both become the one line of an interruption.
    """

    def __init__(self) -> None:
        self.seen = False
        self._previous = sys.unraisablehook

    def _hook(self, unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            self.seen = True
        else:
            self._previous(unraisable)

    def __enter__(self) -> _InterruptWatch:
        self._previous = sys.unraisablehook
        sys.unraisablehook = self._hook
        return self

    def __exit__(self, *exc_info: object) -> None:
        sys.unraisablehook = self._previous


def _caused_by_interrupt(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def _fail(message: str) -> None:
    # One line, whatever the message holds.
    message = " ".join(message.splitlines())
    try:
        print(f"fastmlp: error: {message}", file=sys.stderr)
        sys.stderr.flush()
    except OSError:  # stderr itself is gone: nothing more to say
        pass


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"
