#!/usr/bin/env python
"""Train the classic 784-16-16-10 MLP on MNIST: `python scripts/train_mnist.py --help`.

A thin wrapper over `fastmlp train`; with no flags it runs the default recipe, prints a
per-epoch table and the final test accuracy, and saves the model.
"""

import sys

from fastmlp.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
