"""pytest fixtures that give a test suite a local DSQL endpoint (registered automatically).

Installed with dsqlkit (the ``pytest11`` entry point), nothing to configure. One endpoint starts,
on first use, for the whole test session (ephemeral: its data is deleted at the end); a suite that
never asks for these fixtures pays nothing. Example::

    import dsqlkit.psycopg

    def test_insert(dsql_connect_kwargs, dsql_clean_database):
        with dsqlkit.psycopg.connect(**dsql_connect_kwargs) as conn:
            conn.execute("CREATE TABLE t (id int PRIMARY KEY)")

    def test_row_limit(dsql_endpoint_factory):
        ep = dsql_endpoint_factory(quotas=Quotas(max_rows_per_transaction=10))
        with ep.use_environment():
            ...

Fixtures:

- ``dsql_endpoint`` (session): the shared :class:`~dsqlkit.local.LocalEndpoint`.
- ``dsql_environ`` (function): sets ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
  ``AWS_REGION``, ``PGSSLROOTCERT`` for the test (and unsets ``AWS_SESSION_TOKEN``); the dict.
- ``dsql_connect_kwargs`` (function): keyword arguments for ``dsqlkit.<driver>.connect`` as
  ``admin``, with ``dsql_environ`` in force.
- ``dsql_clean_database`` (function): the shared endpoint with schema ``public`` emptied first
  (tables, views, sequences, functions, types; one statement).
- ``dsql_endpoint_factory`` (function): ``factory(**EndpointConfig fields)`` starts an endpoint
  of its own (custom quotas, region, ...); each is stopped at the end of the test.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from dsqlkit.local.endpoint import LocalEndpoint


@pytest.fixture(scope="session")
def dsql_endpoint() -> Iterator[LocalEndpoint]:
    """One ephemeral local DSQL endpoint for the whole test session."""
    from dsqlkit.local.endpoint import LocalEndpoint

    with LocalEndpoint() as endpoint:
        yield endpoint


@pytest.fixture
def dsql_environ(dsql_endpoint: LocalEndpoint, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The endpoint's environment variables, set for this test only."""
    from dsqlkit.local.address import CONFLICTING_VARIABLES

    environ = dsql_endpoint.environ()
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    for name in CONFLICTING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return environ


@pytest.fixture
def dsql_connect_kwargs(
    dsql_endpoint: LocalEndpoint, dsql_environ: dict[str, str]
) -> dict[str, Any]:
    """``dsqlkit.<driver>.connect(**dsql_connect_kwargs)`` connects as admin."""
    return dsql_endpoint.connect_kwargs()


@pytest.fixture
def dsql_clean_database(dsql_endpoint: LocalEndpoint) -> LocalEndpoint:
    """The shared endpoint, with what earlier tests created in schema public dropped."""
    dsql_endpoint.reset()
    return dsql_endpoint


@pytest.fixture
def dsql_endpoint_factory() -> Iterator[Callable[..., LocalEndpoint]]:
    """Start endpoints with their own options: ``dsql_endpoint_factory(quotas=Quotas(...))``."""
    from dsqlkit.local.endpoint import LocalEndpoint

    started: list[LocalEndpoint] = []

    def factory(**fields: Any) -> LocalEndpoint:
        endpoint = LocalEndpoint(**fields).start()
        started.append(endpoint)
        return endpoint

    yield factory
    for endpoint in reversed(started):
        endpoint.stop()
