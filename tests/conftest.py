"""Shared test setup. The fixtures for a local DSQL endpoint come from ``dsqlkit.pytest_plugin``
(registered by the package's ``pytest11`` entry point): ``dsql_endpoint``, ``dsql_environ``,
``dsql_connect_kwargs``, ``dsql_clean_database``, ``dsql_endpoint_factory``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # Fail early and clearly if the package is not installed (editable) in this environment.
    if not config.pluginmanager.has_plugin("dsqlkit"):
        raise pytest.UsageError(
            "dsqlkit's pytest plugin is not registered: install the package first "
            "(pip install -e '.[dev]')"
        )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited: only its parent has not reaped it yet.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.fixture
def port_is_free() -> Callable[..., bool]:
    """``port_is_free(port)``: whether a TCP port on 127.0.0.1 can be bound (released)."""
    # The same bind probe that `dsqlkit local` runs before it listens.
    from dsqlkit.local.command import _port_free

    def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
        return _port_free(host, port)

    return port_is_free


@pytest.fixture
def process_alive() -> Callable[[int], bool]:
    """``process_alive(pid)``: whether a process is running (not gone, not a zombie)."""
    return _process_alive
