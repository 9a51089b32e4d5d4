"""Root conftest: load the plugin that makes CI fail where torch or MNIST is missing."""

pytest_plugins = ["tests.referee"]
