"""``python -m fastmlp``: the same as the ``fastmlp`` command."""

from fastmlp.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
