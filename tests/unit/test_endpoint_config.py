"""EndpointConfig and Quotas: defaults are DSQL's (spec), bad values are refused at construction."""

from __future__ import annotations

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.config import EndpointConfig, Quotas


def test_defaults_are_dsqls() -> None:
    config = EndpointConfig()
    assert config.quotas.max_rows_per_transaction == spec.TRANSACTION_MAX_ROWS
    assert config.quotas.connection_lifetime_seconds == spec.CONNECTION_LIFETIME_SECONDS
    assert config.startup_timeout_seconds == spec.STARTUP_TIMEOUT_SECONDS
    assert config.hostnames[:2] == ("localhost", config.dsql_hostname)
    assert spec.REGION_FROM_HOST.search(config.dsql_hostname).group(1) == config.region


@pytest.mark.parametrize("value", [0, -1.0])
def test_startup_timeout_must_be_positive(value: float) -> None:
    with pytest.raises(ValueError, match="startup_timeout_seconds must be positive"):
        EndpointConfig(startup_timeout_seconds=value)


@pytest.mark.parametrize("field", ["max_rows_per_transaction", "connection_rate_per_second"])
def test_quotas_must_be_positive(field: str) -> None:
    with pytest.raises(ValueError, match=f"quota {field} must be positive"):
        Quotas(**{field: 0})
