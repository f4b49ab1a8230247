"""Long statement texts are classified in a real worker process, within budgets (issue 11)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from dsqlkit import dsql as spec
from dsqlkit.local.config import Quotas
from dsqlkit.local.rules import dialect
from dsqlkit.local.rules.dialect import Kind, classify, classify_now
from dsqlkit.local.rules.offload import Worker
from dsqlkit.local.rules.policy import Action
from dsqlkit.local.rules.session import DsqlSession

LONG_INSERT = "INSERT INTO t (id, v) VALUES " + ", ".join(f"({i}, 'row {i}')" for i in range(300))
#: PostgreSQL parses it (and then refuses a million columns); its parse tree is ~90 MB of JSON.
HOSTILE = "SELECT " + "1," * 1_000_000 + "'server_version'"


@pytest.fixture
def worker() -> Iterator[Worker]:
    w = Worker()
    yield w
    w.close()


def test_short_or_cached_texts_are_classified_now() -> None:
    assert classify_now("SELECT 1") is classify("SELECT 1")
    long_select = "SELECT " + ", ".join(f"c{i}" for i in range(400)) + " FROM t"
    assert len(long_select) > dialect.INLINE_LENGTH
    assert classify_now(long_select + " ") is None
    verdict = classify(long_select)  # cacheable: later asks are answered from the cache
    assert classify_now(long_select) is verdict


def test_the_worker_gives_the_same_verdict(worker: Worker) -> None:
    for sql in (LONG_INSERT, f"TRUNCATE t; {LONG_INSERT}", f"SELECT version(), '{'x' * 2000}'"):
        assert asyncio.run(worker.classify(sql)) == dialect.classify_uncached(sql)
    assert worker.started == 1  # one process serves them all


def test_a_text_over_the_time_budget_is_refused_and_the_worker_replaced() -> None:
    worker = Worker(budget_seconds=0.05)
    try:
        verdict = asyncio.run(worker.classify(HOSTILE))
        assert verdict.refusal == spec.STATEMENT_TOO_COMPLEX.format(seconds=0, mib=2048)
        assert worker.refused == 1
        worker.budget_seconds = 30
        assert asyncio.run(worker.classify(LONG_INSERT)).kinds == (Kind.DML,)
        assert worker.started == 2
    finally:
        worker.close()


def test_a_text_over_the_memory_budget_is_refused() -> None:
    worker = Worker(memory_limit=100 << 20)  # the interpreter fits (~25 MiB); the tree does not
    try:
        verdict = asyncio.run(worker.classify(HOSTILE[:200_000] + "1"))
        assert verdict.refusal is not None
        assert verdict.refusal.sqlstate == spec.STATEMENT_TOO_COMPLEX.sqlstate
        assert asyncio.run(worker.classify(LONG_INSERT)).kinds == (Kind.DML,)
    finally:
        worker.close()


def test_the_session_decides_long_texts_later() -> None:
    session = DsqlSession(Quotas())
    sql = f"TRUNCATE t; {LONG_INSERT}; SELECT 2"  # not cached by the tests above
    decision = session.on_statement(sql, extended=False)
    assert decision.wait is not None  # the relay awaits it; the session's client waits
    later = asyncio.run(_await(decision.wait))
    assert (later.action, later.error) == (Action.REFUSE, classify(sql).refusal)


async def _await(wait: object) -> object:
    return await wait  # type: ignore[misc]
