"""The relay's own CPU cost per round trip: this tree's session code against an older commit's.

Both are driven in this process with no sockets (stub transports), so the numbers are the
endpoint's Python work per round trip (client frames in, backend frames in, bytes out) and are
far less sensitive to a loaded machine than ``bench_endpoint.py``'s wall-clock round trips.
The older relay (``--base``, default ``b024703``: before the sans-I/O state machine) is loaded
from git into a private module. Each workload alternates old and new in rounds and keeps each
side's best round (CPU time, ``time.process_time``).

Workloads: ``SELECT 1`` as a simple Query (psycopg2), as an unnamed Parse/Bind/Execute/Sync
(psycopg 3 without prepare), and as a named statement Bind/Execute/Sync (asyncpg, psycopg with
prepare) with a 2-row answer. DSQL's rules are on (``DsqlSession``), texts cached as in real use.

Run: ``.venv/bin/python benchmarks/bench_session.py [--base REV] [-n 20000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import importlib.util
import platform
import struct
import subprocess
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dsqlkit.local.backend.pool import BackendPool
from dsqlkit.local.config import EndpointConfig, Quotas
from dsqlkit.local.rules import occ
from dsqlkit.local.rules.session import DsqlSession
from dsqlkit.local.wire import protocol as pg

ROOT = Path(__file__).resolve().parents[1]


class _Transport:
    def __init__(self) -> None:
        self.written = 0

    def write(self, data: Any) -> None:
        self.written += len(data)

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    def is_closing(self) -> bool:
        return False

    def close(self) -> None: ...


class _Stats:
    backend_sessions_open = 0
    backend_sessions_opened = 0
    connections_authenticated = 0


class _Host:
    """Enough of server.Endpoint for both relays (old private names and new SessionHost)."""

    def __init__(self) -> None:
        self.config = EndpointConfig()
        self._stats = self.counters = _Stats()
        self._backend_pool = self.backend_pool = BackendPool[Any](0)
        self.loop = self._loop = types.SimpleNamespace(time=time.monotonic)

    def _running_loop(self) -> Any:
        return self.loop


def _load_old(rev: str) -> types.ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:src/dsqlkit/local/relay.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("dsqlkit_old_relay", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    exec(compile(source, f"{rev}:relay.py", "exec"), module.__dict__)
    return module


def _session(relay_module: types.ModuleType, new: bool) -> tuple[Any, Any]:
    """A ClientSession in its relay state with a BackendLink, both over stub transports."""
    session = relay_module.ClientSession(_Host(), ("bench", 0), None, False, 0.0)
    session.transport = _Transport()
    session.state = relay_module._State.RELAY
    session.policy = DsqlSession(Quotas(), catalog=occ.OccState())
    link = relay_module.BackendLink(session)
    link.transport = _Transport()
    session.backend = link
    if new:
        from dsqlkit.local.wire.session import Relay

        session.relay = Relay(session.policy)
        session.relay.to_client = session._to_client
        session._reader.inspect = relay_module.CLIENT_INSPECT
        session._reader.max_size = 1 << 24
        session._reader.startup = False
        link.relaying()
    else:
        session._reader = pg.MessageReader(relay_module._CLIENT_INSPECT)
        link._reader.inspect = relay_module._SERVER_INSPECT
    return session, link


def _bind(statement: str) -> bytes:
    return pg.message(b"B", b"\0" + statement.encode() + b"\0" + struct.pack("!HHH", 0, 0, 0))


EXECUTE = pg.message(b"E", b"\0\0\0\0\0")
ROW = pg.message(b"D", struct.pack("!HI", 1, 1) + b"1")
DESCRIPTION = pg.message(
    b"T", struct.pack("!H", 1) + b"c\0" + struct.pack("!IHIHIH", 0, 0, 23, 4, 0xFFFFFFFF, 0)
)
WORKLOADS: dict[str, tuple[bytes, bytes]] = {
    "simple Query SELECT 1": (
        pg.query("SELECT 1"),
        DESCRIPTION + ROW + pg.command_complete("SELECT 1") + pg.ready_for_query("I"),
    ),
    "unnamed Parse/Bind/Execute/Sync": (
        pg.parse("", "SELECT 1") + _bind("") + EXECUTE + pg.sync(),
        pg.message(b"1") + pg.message(b"2") + ROW + pg.command_complete("SELECT 1")
        + pg.ready_for_query("I"),
    ),
    "named Bind/Execute/Sync, 2 rows": (
        _bind("s1") + EXECUTE + pg.sync(),
        pg.message(b"2") + ROW + ROW + pg.command_complete("SELECT 2") + pg.ready_for_query("I"),
    ),
}  # fmt: skip


def _prepare_named(session: Any, link: Any) -> None:
    session.data_received(pg.parse("s1", "SELECT 1") + pg.sync())
    link.data_received(pg.message(b"1") + pg.ready_for_query("I"))


def per_round_trip_us(session: Any, link: Any, client: bytes, backend: bytes, n: int) -> float:
    feed_client: Callable[[bytes], None] = session.data_received
    feed_backend: Callable[[bytes], None] = link.data_received
    started = time.process_time()
    for _ in range(n):
        feed_client(client)
        feed_backend(backend)
    return (time.process_time() - started) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base", default="b024703", help="the older commit to compare with")
    parser.add_argument("-n", type=int, default=20000, help="round trips per round")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from dsqlkit.local import relay as new_relay

    old_relay = _load_old(args.base)
    print(f"# Relay CPU per round trip: this tree vs {args.base} (benchmarks/bench_session.py)\n")
    print(
        f"Python {platform.python_version()}, {platform.machine()}, n={args.n}, best of {args.rounds}\n"
    )
    print(f"| workload | {args.base} (us) | this tree (us) | ratio new/old |")
    print("| --- | ---: | ---: | ---: |")
    for name, (client, backend) in WORKLOADS.items():
        best = {"old": float("inf"), "new": float("inf")}
        sides = {"old": _session(old_relay, False), "new": _session(new_relay, True)}
        for session, link in sides.values():
            _prepare_named(session, link)
            per_round_trip_us(session, link, client, backend, 200)  # warm caches
        for _ in range(args.rounds):
            for side, (session, link) in sides.items():
                best[side] = min(
                    best[side], per_round_trip_us(session, link, client, backend, args.n)
                )
        print(
            f"| {name} | {best['old']:.2f} | {best['new']:.2f} | {best['new'] / best['old']:.3f} |"
        )


if __name__ == "__main__":
    main()
