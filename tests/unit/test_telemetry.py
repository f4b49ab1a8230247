"""OpenTelemetry spans for connects and tokens, with the real SDK and an in-memory exporter.

The connects go to a real closed port on loopback (refused at once), so no endpoint is needed:
the spans of a failing connect are what matter here. The AWS credentials are fake values in the
environment (tokens are signed locally; nothing reaches AWS).
"""

from __future__ import annotations

import socket
import subprocess
import sys

import psycopg
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

import dsqlkit.asyncpg as dsql_asyncpg
import dsqlkit.psycopg as dsql_psycopg
from dsqlkit import telemetry


@pytest.fixture
def exporter(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    telemetry.configure(enabled=True, tracer_provider=provider)
    yield memory
    telemetry.configure(enabled=True, tracer_provider=None)


@pytest.fixture
def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the with ends: connects are refused


def kwargs(port):
    return {"host": "127.0.0.1", "port": port, "region": "us-east-1", "connect_retry": None,
            "rate_limit": None, "sslmode": "require"}  # fmt: skip


def test_connect_and_token_spans(exporter, closed_port):
    with pytest.raises(psycopg.OperationalError):
        dsql_psycopg.connect(**kwargs(closed_port))
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert set(spans) == {"dsqlkit.connect", "dsqlkit.token"}
    connect, token = spans["dsqlkit.connect"], spans["dsqlkit.token"]
    assert token.parent.span_id == connect.context.span_id
    assert connect.attributes["driver"] == "psycopg" and connect.attributes["host"] == "127.0.0.1"
    assert connect.status.status_code == StatusCode.ERROR
    assert token.status.status_code != StatusCode.ERROR
    # The token is never recorded: not in attributes, not in the exception event.
    recorded = str([(s.attributes, [e.attributes for e in s.events]) for s in spans.values()])
    assert "X-Amz-Signature" not in recorded and "Amz-Credential" not in recorded


async def test_async_connect_span(exporter, closed_port):
    with pytest.raises(OSError):
        await dsql_asyncpg.connect(**kwargs(closed_port))
    names = [s.name for s in exporter.get_finished_spans()]
    assert names == ["dsqlkit.token", "dsqlkit.connect"]


def test_disabled_makes_no_spans(exporter, closed_port):
    telemetry.configure(enabled=False)
    with pytest.raises(psycopg.OperationalError):
        dsql_psycopg.connect(**kwargs(closed_port))
    assert exporter.get_finished_spans() == ()


def test_without_opentelemetry_nothing_is_imported(closed_port):
    # A finder that hides the package, as if it were not installed.
    code = f"""
import sys
class Hide:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ModuleNotFoundError(name)
sys.meta_path.insert(0, Hide())
import dsqlkit.psycopg, dsqlkit.telemetry
assert not dsqlkit.telemetry.available()
try:
    dsqlkit.psycopg.connect(host="127.0.0.1", port={closed_port}, region="us-east-1",
                            connect_retry=None, rate_limit=None, sslmode="require")
except Exception:
    pass
assert not [m for m in sys.modules if m.startswith("opentelemetry")], "imported"
print("ok")
"""
    env = {"AWS_ACCESS_KEY_ID": "AKIDEXAMPLE", "AWS_SECRET_ACCESS_KEY": "x" * 40, "PATH": ""}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
