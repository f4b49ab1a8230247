"""``dsqlkit local`` as users run it: a subprocess, its printed instructions, Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from dsqlkit import dsql as spec

LOCAL = [sys.executable, "-m", "dsqlkit", "local"]


def _descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (PostgreSQL and its workers), from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def _read_banner(proc: subprocess.Popen[str]) -> list[str]:
    lines = []
    for line in proc.stdout:  # the pytest timeout bounds this if the banner never comes
        lines.append(line.rstrip("\n"))
        if line.startswith("PGPASSWORD="):
            return lines
    raise AssertionError(f"dsqlkit local exited early: {proc.wait()} {proc.stderr.read()}")


@pytest.fixture
def cli_endpoint():
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [*LOCAL, "--ephemeral", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        yield proc, _read_banner(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_prints_working_instructions_and_stops_on_sigint(
    cli_endpoint, port_is_free, process_alive
):
    proc, lines = cli_endpoint
    text = "\n".join(lines)
    port = int(re.search(r"^  port:\s+(\d+)$", text, re.M).group(1))
    exports = dict(re.findall(r"^export (\w+)=(\S+)$", text, re.M))
    assert set(exports) == {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "PGSSLROOTCERT",
    }
    assert "local-only" in text  # the printed secret is said to be a local test credential

    # The printed psql line's token command, with the printed exports, gives a working password.
    token_command = re.search(r"PGPASSWORD=\$\((dsqlkit token [^)]*)\)", text).group(1)
    env = {**os.environ, **exports}
    env.pop("AWS_SESSION_TOKEN", None)
    token = subprocess.run(
        [sys.executable, "-m", "dsqlkit", *token_command.split()[1:]],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout.strip()
    conninfo = re.search(r'psql "([^"]+)"', text).group(1)
    with psycopg.connect(conninfo, password=token) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert f"port={port}" in conninfo

    workers = _descendants(proc.pid)
    assert workers, "no PostgreSQL under dsqlkit local"
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=60) == 0, proc.stderr.read()
    assert not [pid for pid in workers if process_alive(pid)], "PostgreSQL left running"
    assert port_is_free(port)


def test_help_documents_every_option():
    out = subprocess.run([*LOCAL, "--help"], capture_output=True, text=True, check=True).stdout
    for option in (
        "--port",
        "--listen",
        "--data-dir",
        "--ephemeral",
        "--hostname",
        "--region",
        "--cluster-id",
        "--max-connections",
        "--connection-rate",
        "--connection-burst",
        "--connection-lifetime",
        "--max-transaction-age",
        "--max-rows",
        "--max-bytes",
        "--backend",
        "--no-dialect-checks",
        "--added-latency-ms",
        "--connect-delay-ms",
        "--log-level",
        "--no-trust-environment",
    ):
        assert option in out
    assert str(spec.DEFAULT_PORT) in out


def test_port_taken_is_a_clear_error():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [*LOCAL, "--ephemeral", "--port", str(port)], capture_output=True, text=True, timeout=60
        )
    assert result.returncode == 1
    assert f"port {port}" in result.stderr and "--port 0" in result.stderr


def test_backend_that_cannot_start_is_a_clear_error():
    with socket.socket() as closed:  # a port nothing listens on
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    result = subprocess.run(
        [
            *LOCAL,
            "--ephemeral",
            "--port",
            "0",
            "--backend",
            f"postgresql://x@127.0.0.1:{port}/postgres",
        ],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1
    assert "could not start the endpoint" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_cluster_id_is_a_clear_error():
    result = subprocess.run(
        [*LOCAL, "--ephemeral", "--cluster-id", "Not-An-Id"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "26 lowercase" in result.stderr
