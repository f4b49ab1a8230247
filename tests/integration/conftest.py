"""Fixtures shared by the integration tests (the endpoint itself: ``dsqlkit.pytest_plugin``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

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
