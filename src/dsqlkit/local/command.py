"""``dsqlkit local``: run a DSQL-compatible endpoint in the foreground until Ctrl-C.

Examples::

    dsqlkit local                          # port 5432, data kept in ~/.dsqlkit/local
    dsqlkit local --ephemeral --port 0     # a fresh throwaway endpoint on a free port
    dsqlkit local --max-rows 10 --connection-lifetime 5

It prints where it listens, the environment to export and how to connect (Python and psql).
Exit codes: 0 after Ctrl-C / SIGTERM, 1 when it cannot start (port taken, backend failure).
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import shlex
import signal
import socket
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dsqlkit import dsql as spec
from dsqlkit.local.config import EndpointConfig, Quotas

if TYPE_CHECKING:
    from dsqlkit.local.endpoint import LocalEndpoint

DEFAULT_DATA_DIR = Path("~/.dsqlkit/local")

#: option -> (Quotas field, type, help); defaults are DSQL's, shown by --help.
_QUOTA_OPTIONS: dict[str, tuple[str, type, str]] = {
    "--max-connections": ("max_connections", int, "open connections"),
    "--connection-rate": ("connection_rate_per_second", float, "new connections per second"),
    "--connection-burst": ("connection_burst", int, "new-connection burst"),
    "--connection-lifetime": ("connection_lifetime_seconds", float, "connection lifetime, s"),
    "--max-transaction-age": ("max_transaction_age_seconds", float, "transaction age, s"),
    "--max-rows": ("max_rows_per_transaction", int, "rows changed per transaction"),
    "--max-bytes": ("max_bytes_per_transaction", int, "bytes changed per transaction"),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``dsqlkit local`` options to ``parser``."""
    parser.formatter_class = argparse.ArgumentDefaultsHelpFormatter
    parser.epilog = "Stop with Ctrl-C (SIGINT) or SIGTERM."
    where = parser.add_argument_group("where it listens")
    where.add_argument(
        "--port",
        type=int,
        default=spec.DEFAULT_PORT,
        help="TCP port; 0 picks a free one",
    )
    where.add_argument("--listen", default="127.0.0.1", help="address to listen on")
    where.add_argument(
        "--hostname",
        action="append",
        default=[],
        metavar="NAME",
        help="extra host name to serve (SNI and certificate); repeatable",
    )
    where.add_argument("--region", default=EndpointConfig.region, help="AWS region served")
    where.add_argument(
        "--cluster-id",
        default=EndpointConfig.cluster_id,
        help="26 lowercase letters/digits, for the name <cluster-id>.dsql.<region>.on.aws",
    )
    data = parser.add_argument_group("data")
    data.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="persistent directory for the database, CA and local credentials",
    )
    data.add_argument(
        "--ephemeral",
        action="store_true",
        help="use a temporary data directory, deleted at exit (overrides --data-dir)",
    )
    data.add_argument(
        "--backend",
        default="embedded",
        help="PostgreSQL behind the endpoint: embedded, system, or a postgresql:// URL",
    )
    quotas = parser.add_argument_group("quotas (defaults are DSQL's)")
    defaults = Quotas()
    for option, (field, kind, text) in _QUOTA_OPTIONS.items():
        quotas.add_argument(option, type=kind, default=getattr(defaults, field), help=text)
    behaviour = parser.add_argument_group("behaviour")
    behaviour.add_argument(
        "--no-dialect-checks",
        action="store_true",
        help="forward all SQL unchecked (no DSQL dialect or transaction rules)",
    )
    behaviour.add_argument(
        "--added-latency-ms",
        type=float,
        default=0.0,
        help="simulated network delay added to each round trip",
    )
    behaviour.add_argument(
        "--connect-delay-ms", type=float, default=0.0, help="delay added to each new connection"
    )
    behaviour.add_argument(
        "--backend-pool",
        type=int,
        default=0,
        metavar="N",
        help="keep up to N idle PostgreSQL sessions (reset with DISCARD ALL) for later clients "
        "with the same role and startup parameters: faster connects, but pg_backend_pid() can "
        "repeat across clients; 0 = one new session per client, as DSQL",
    )
    behaviour.add_argument(
        "--startup-timeout",
        type=float,
        default=spec.STARTUP_TIMEOUT_SECONDS,
        metavar="SECONDS",
        help="time a client has from connecting to authenticated before it is closed",
    )
    behaviour.add_argument(
        "--no-trust-environment",
        action="store_true",
        help="accept only the local identities, not this process's AWS_* credentials",
    )
    behaviour.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level",
    )


def config_from_args(args: argparse.Namespace) -> EndpointConfig:
    """The :class:`EndpointConfig` that ``args`` describe (raises ValueError on bad values)."""
    if not spec.CLUSTER_ID.match(args.cluster_id):
        raise ValueError(
            f"--cluster-id {args.cluster_id!r} is not a cluster id: use 26 lowercase letters/digits"
        )
    if args.backend_pool < 0:
        raise ValueError(f"--backend-pool {args.backend_pool} is negative: use 0 (off) or more")
    quotas = Quotas(
        **{
            field: getattr(args, field_attr(option))
            for option, (field, _, _) in _QUOTA_OPTIONS.items()
        }
    )
    return EndpointConfig(
        region=args.region,
        cluster_id=args.cluster_id,
        extra_hostnames=tuple(args.hostname),
        listen_host=args.listen,
        port=args.port,
        data_dir=None if args.ephemeral else args.data_dir.expanduser(),
        backend=args.backend,
        quotas=quotas,
        trust_environment=not args.no_trust_environment,
        dialect_checks=not args.no_dialect_checks,
        added_latency_ms=args.added_latency_ms,
        backend_pool_size=args.backend_pool,
        connect_delay_ms=args.connect_delay_ms,
        startup_timeout_seconds=args.startup_timeout,
        log_level=args.log_level,
    )


def field_attr(option: str) -> str:
    """argparse's attribute name for a ``--long-option``."""
    return option.lstrip("-").replace("-", "_")


def run(args: argparse.Namespace) -> int:
    """Run the endpoint until SIGINT/SIGTERM; 0 on a clean stop, 1 if it cannot start."""
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s"
    )
    try:
        config = config_from_args(args)
    except ValueError as exc:
        return _fail(str(exc))
    if config.port and not _port_free(config.listen_host, config.port):
        return _port_taken(config)
    try:
        return _run(_serve(config))
    except KeyboardInterrupt:  # Ctrl-C before the signal handlers were installed
        return 0


def _run(main: Coroutine[Any, Any, int]) -> int:
    """``asyncio.run`` on the endpoint's loop (uvloop when installed)."""
    from dsqlkit.local.endpoint import new_event_loop

    loop = new_event_loop()
    try:
        return loop.run_until_complete(main)
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


async def _serve(config: EndpointConfig) -> int:
    from dsqlkit.local.endpoint import LocalEndpoint

    endpoint = LocalEndpoint(config)
    try:
        await endpoint.astart()
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return _port_taken(config)
        return _fail(f"could not start the endpoint: {exc}")
    except Exception as exc:  # backend failures: a message, not a traceback
        return _fail(f"could not start the endpoint: {type(exc).__name__}: {exc}")
    try:
        print_banner(endpoint, sys.stdout)
        await _wait_for_signal()
        print("stopping...", file=sys.stderr, flush=True)
    finally:
        await endpoint.astop()
    return 0


async def _wait_for_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def print_banner(ep: LocalEndpoint, out: TextIO) -> None:
    """Print where the endpoint listens and how to connect (exports, Python, psql)."""
    creds = ep.credentials
    ca = shlex.quote(str(ep.ca_file))
    data = "temporary (deleted at exit)" if ep.config.data_dir is None else str(ep.data_dir)
    lines = [
        "dsqlkit local endpoint is running (Ctrl-C to stop)",
        f"  host:       {ep.host}",
        f"  port:       {ep.port}",
        f"  region:     {ep.region}",
        f"  hostname:   {ep.hostname}",
        f"  ca file:    {ep.ca_file}",
        f"  data dir:   {data}",
        "",
        "# Environment (a local-only test identity generated for this endpoint, not an AWS key):",
        f"export AWS_ACCESS_KEY_ID={shlex.quote(creds.access_key)}",
        f"export AWS_SECRET_ACCESS_KEY={shlex.quote(creds.secret_key)}",
        f"export AWS_REGION={shlex.quote(ep.region)}",
        f"export PGSSLROOTCERT={ca}",
        "",
        "# Python:",
        "import dsqlkit.psycopg",
        f"conn = dsqlkit.psycopg.connect(host={ep.host!r}, port={ep.port}, "
        f"region={ep.region!r}, user='admin', sslrootcert={str(ep.ca_file)!r})",
        "",
        "# psql:",
        f"PGPASSWORD=$(dsqlkit token --host {ep.host} --region {ep.region}) "
        f'psql "host={ep.host} port={ep.port} user=admin dbname={spec.DATABASE} '
        f'sslmode=verify-full sslrootcert={ep.ca_file}"',
        "",
    ]
    out.write("\n".join(lines) + "\n")
    out.flush()


def _port_free(host: str, port: int) -> bool:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _port_taken(config: EndpointConfig) -> int:
    return _fail(
        f"port {config.port} on {config.listen_host} is already in use; "
        "choose another with --port N, or --port 0 for any free port"
    )


def _fail(message: str) -> int:
    print(f"dsqlkit local: error: {message}", file=sys.stderr, flush=True)
    return 1
