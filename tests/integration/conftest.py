"""Fixtures shared by the integration tests (the endpoint itself: ``dsqlkit.pytest_plugin``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest


@pytest.fixture
def connect(dsql_endpoint) -> Iterator[Callable[[], psycopg.Connection]]:
    """``connect()``: a new autocommit psycopg connection to the endpoint, closed after the test."""
    opened: list[psycopg.Connection] = []

    def open_one() -> psycopg.Connection:
        conn = psycopg.connect(dsql_endpoint.dsn(), autocommit=True)
        opened.append(conn)
        return conn

    yield open_one
    for conn in opened:
        conn.close()


@pytest.fixture
def kwargs_without_ca(dsql_connect_kwargs, monkeypatch) -> dict[str, Any]:
    """The connect kwargs without the endpoint's CA, as argument or as ``PGSSLROOTCERT``: the
    default (system CAs) must refuse it."""
    monkeypatch.delenv("PGSSLROOTCERT", raising=False)
    return {k: v for k, v in dsql_connect_kwargs.items() if k != "sslrootcert"}


@pytest.fixture
def kwargs_wrong_secret(dsql_connect_kwargs, monkeypatch) -> dict[str, Any]:
    """The connect kwargs, with a wrong AWS secret key in the environment (after dsql_environ's)."""
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-" + "x" * 25)
    return dsql_connect_kwargs
