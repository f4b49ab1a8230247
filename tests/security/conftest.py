"""Fixtures shared by the security tests: each module provides its own ``ep`` endpoint."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dsqlkit.local import LocalEndpoint
from tests.security.clients import GoodClient


@pytest.fixture
def good(ep: LocalEndpoint) -> Iterator[GoodClient]:
    """A well-behaved client of the module's endpoint, checked once before the attack."""
    client = GoodClient(ep)
    client.check()
    yield client
    client.close()
