"""Shared test setup. The fixtures for a local DSQL endpoint come from ``dsqlkit.pytest_plugin``
(registered by the package's ``pytest11`` entry point): ``dsql_endpoint``, ``dsql_environ``,
``dsql_connect_kwargs``, ``dsql_clean_database``, ``dsql_endpoint_factory``.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Fail early and clearly if the package is not installed (editable) in this environment.
    if not config.pluginmanager.has_plugin("dsqlkit"):
        raise pytest.UsageError(
            "dsqlkit's pytest plugin is not registered: install the package first "
            "(pip install -e '.[dev]')"
        )
