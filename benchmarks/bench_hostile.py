"""Hostile clients against the local endpoint in its own process: what they cost everyone else.

Two measurements (issue 11), both on loopback only, bounded in count and time, stopping by
themselves:

``stall``: a well-behaved client runs ``SELECT 1`` in a loop, first alone (the peer: its own
latency), then while another client sends a 2 MB ``SELECT 1,1,...,'server_version'`` (it froze
every session for 186 s before the fix). Reported: the good client's latency alone and during the
attack (median, p99, max), and the delay = max during - max alone, in ms.

``memory``: ``--connections`` unauthenticated clients (default 1,000, the default burst) each
open TLS, send a StartupMessage and then a password message whose header claims the largest
message (10 MiB) and try to send all of it, slowly enough to be held. Reported: the endpoint
process's resident memory (VmRSS, sampled every 50 ms) before, at its peak, and after. A safety
stop ends the attack if the endpoint grows by more than ``--safety-mib`` (an uncapped endpoint
would reach ~10 GiB).

Run (about a minute; ``--output`` appends the results)::

    .venv/bin/python benchmarks/bench_hostile.py --output benchmarks/results/hostile.md
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
from bench_endpoint import machine  # the same machine line as the other results

from dsqlkit import dsql as spec
from dsqlkit.local.address import EndpointAddress
from dsqlkit.local.process import EndpointProcess
from dsqlkit.local.tls import client_context
from dsqlkit.local.wire import protocol as pg

HOSTILE_STATEMENT = "SELECT " + "1," * 1_000_000 + "'server_version'"  # 2 MB
ALONE_QUERIES = 300
CHUNK = b"x" * 65536


# --- stall -------------------------------------------------------------------------------------


@dataclass
class Latencies:
    seconds: list[float] = field(default_factory=list)

    def line(self) -> str:
        ms = sorted(s * 1000 for s in self.seconds)
        p99 = ms[min(len(ms) - 1, int(len(ms) * 0.99))]
        return f"n {len(ms)}, median {statistics.median(ms):.2f} ms, p99 {p99:.2f} ms, max {ms[-1]:.2f} ms"

    @property
    def max_ms(self) -> float:
        return max(self.seconds) * 1000


def _select_one(conn: psycopg.Connection[Any], into: Latencies) -> None:
    started = time.perf_counter()
    conn.execute("SELECT 1").fetchone()
    into.seconds.append(time.perf_counter() - started)


def stall(address: EndpointAddress) -> dict[str, Any]:
    with psycopg.connect(address.dsn(), autocommit=True) as good:
        for _ in range(20):  # warm up
            good.execute("SELECT 1")
        alone = Latencies()
        for _ in range(ALONE_QUERIES):
            _select_one(good, alone)
        outcome: dict[str, Any] = {}

        def attack() -> None:
            started = time.perf_counter()
            with psycopg.connect(address.dsn(), autocommit=True) as hostile:
                try:
                    hostile.execute(HOSTILE_STATEMENT)
                    outcome["answer"] = "rows"
                except psycopg.Error as exc:
                    outcome["answer"] = f"{exc.sqlstate} {str(exc).splitlines()[0]}"
            outcome["seconds"] = time.perf_counter() - started

        attacker = threading.Thread(target=attack)
        during = Latencies()
        attacker.start()
        while attacker.is_alive():
            _select_one(good, during)
        attacker.join()
    return {"alone": alone, "during": during, **outcome}


# --- memory ------------------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


@dataclass
class Attack:
    sent: int = 0
    refused: int = 0
    held: int = 0
    failed: int = 0
    stop: asyncio.Event = field(default_factory=asyncio.Event)


async def _password_attacker(address: EndpointAddress, attack: Attack, budget: int) -> None:
    """One client: TLS, startup, then a maximal password message sent slowly until refused."""
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", address.port)
        writer.write(pg.ssl_request())
        if await reader.readexactly(1) != b"S":
            raise ConnectionError("no S")
        await writer.start_tls(client_context(address.ca_file), server_hostname=address.host)
        writer.write(pg.startup_message({"user": spec.ADMIN_USER, "database": spec.DATABASE}))
        await reader.readexactly(9)  # AuthenticationCleartextPassword
        writer.write(b"p" + pg.INT32.pack(spec.MAX_MESSAGE_SIZE))  # the largest message
    except (OSError, asyncio.IncompleteReadError, ConnectionError):
        attack.failed += 1
        return
    attack.held += 1
    sent = 0
    try:
        while sent < budget and not attack.stop.is_set():
            writer.write(CHUNK)
            await asyncio.wait_for(writer.drain(), 1.0)
            sent += len(CHUNK)
            attack.sent += len(CHUNK)
            if reader.at_eof() or writer.is_closing():
                break
            await asyncio.sleep(0.01)
        await asyncio.wait_for(reader.read(), 5.0)  # the endpoint's answer (a refusal) or EOF
        attack.refused += 1
    except (OSError, asyncio.TimeoutError, ConnectionError):
        attack.refused += 1
    finally:
        attack.held -= 1
        writer.close()


async def _memory_attack(
    address: EndpointAddress, pid: int, connections: int, safety_mib: float, seconds: float
) -> dict[str, Any]:
    attack = Attack()
    before = rss_mib(pid)
    peak = before
    budget = spec.MAX_MESSAGE_SIZE - 16
    tasks = [
        asyncio.create_task(_password_attacker(address, attack, budget)) for _ in range(connections)
    ]
    deadline = time.monotonic() + seconds
    stopped_for_safety = False
    while not all(t.done() for t in tasks) and time.monotonic() < deadline:
        peak = max(peak, rss_mib(pid))
        if peak - before > safety_mib and not attack.stop.is_set():
            stopped_for_safety = True
            attack.stop.set()
        await asyncio.sleep(0.05)
    attack.stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(1.0)
    return {
        "before": before,
        "peak": peak,
        "after": rss_mib(pid),
        "sent_mib": attack.sent / 2**20,
        "failed": attack.failed,
        "stopped_for_safety": stopped_for_safety,
    }


def memory(address: EndpointAddress, pid: int, args: argparse.Namespace) -> dict[str, Any]:
    return asyncio.run(
        _memory_attack(address, pid, args.connections, args.safety_mib, args.seconds)
    )


# --- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0, help="the memory attack's limit")
    parser.add_argument("--safety-mib", type=float, default=1536.0)
    parser.add_argument("--only", choices=["stall", "memory"])
    parser.add_argument("--output", type=Path, help="append the results (Markdown) here")
    args = parser.parse_args(argv)
    lines = [f"## {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC: {machine()}", ""]
    fields = {"trust_environment": False, "startup_timeout_seconds": 20.0}
    endpoint = EndpointProcess(**fields)
    with endpoint as address:
        assert endpoint.pid is not None
        pid = endpoint.pid
        if args.only in (None, "stall"):
            result = stall(address)
            delay = result["during"].max_ms - result["alone"].max_ms
            lines += [
                "stall (2 MB `SELECT 1,1,...,'server_version'` from another client):",
                f"- good client alone: {result['alone'].line()}",
                f"- during the attack: {result['during'].line()}",
                f"- the hostile statement: answered in {result['seconds']:.1f} s: {result['answer']}",
                f"- **delay of a good client's SELECT 1: {max(delay, 0.0):.1f} ms** (max during - max alone)",
                "",
            ]
        if args.only in (None, "memory"):
            result = memory(address, pid, args)
            lines += [
                f"memory ({args.connections} unauthenticated connections, each a 10 MiB password):",
                f"- endpoint VmRSS before {result['before']:.1f} MiB, peak {result['peak']:.1f} MiB,"
                f" after {result['after']:.1f} MiB",
                f"- **growth at peak: {result['peak'] - result['before']:.1f} MiB**; clients sent"
                f" {result['sent_mib']:.1f} MiB in all; {result['failed']} could not reach the"
                f" password; safety stop: {'yes' if result['stopped_for_safety'] else 'no'}",
                "",
            ]
    text = "\n".join(lines)
    print(text)
    if args.output:
        with args.output.open("a") as out:
            out.write(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
