"""OCC and connect-retry policies: classification, backoff bounds, the retry loops (no I/O)."""

from __future__ import annotations

import asyncio

import asyncpg
import psycopg
import psycopg2
import pytest

from dsqlkit import dsql as spec
from dsqlkit import stats
from dsqlkit.retry import (
    ConnectBackoff,
    ConnectRetryConfig,
    OCCRetryConfig,
    arun_with_occ_retry,
    connect_error_kind,
    full_jitter,
    is_occ_error,
    is_retryable_connect_error,
    resolve_retry_config,
    run_with_occ_retry,
)


class FakeSqlstate(Exception):
    """Stands for a driver error carrying a SQLSTATE (psycopg/asyncpg ``sqlstate``)."""

    def __init__(self, sqlstate: str, message: str = "") -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


class FakePgcode(Exception):
    """Stands for a psycopg2 error (``pgcode``)."""

    def __init__(self, pgcode: str) -> None:
        super().__init__("")
        self.pgcode = pgcode


class Wrapper(Exception):
    """Stands for SQLAlchemy's DBAPIError, which keeps the driver error in ``.orig``."""

    def __init__(self, orig: BaseException) -> None:
        super().__init__("wrapped")
        self.orig = orig


def test_occ_recognised_by_sqlstate_pgcode_and_message():
    assert is_occ_error(FakeSqlstate(spec.OCC_SQLSTATE))
    assert is_occ_error(FakePgcode(spec.OCC_SQLSTATE))
    assert is_occ_error(RuntimeError(spec.OCC_DATA_CONFLICT.message))
    assert is_occ_error(RuntimeError(spec.OCC_SCHEMA_CONFLICT.message))
    assert not is_occ_error(FakeSqlstate(spec.UNSUPPORTED_SQLSTATE))
    assert not is_occ_error(ValueError("nothing"))


def test_occ_recognised_with_real_driver_error_classes():
    assert is_occ_error(psycopg.errors.SerializationFailure("x"))
    assert is_occ_error(asyncpg.exceptions.SerializationError("x"))
    assert not is_occ_error(psycopg.errors.UniqueViolation("x"))
    assert not is_occ_error(psycopg2.errors.UniqueViolation())


def test_occ_recognised_through_cause_context_and_orig():
    inner = FakeSqlstate(spec.OCC_SQLSTATE)
    assert is_occ_error(Wrapper(inner))
    outer = RuntimeError("outer")
    outer.__cause__ = inner
    assert is_occ_error(outer)
    ctx = RuntimeError("ctx")
    ctx.__context__ = Wrapper(inner)
    assert is_occ_error(ctx)


def test_cause_cycles_terminate():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert not is_occ_error(a)


def test_retry_config_validation_says_what_is_wrong():
    with pytest.raises(ValueError, match="max_retries"):
        OCCRetryConfig(max_retries=-1)
    with pytest.raises(ValueError, match="max_delay_ms"):
        OCCRetryConfig(base_delay_ms=10, max_delay_ms=5)
    with pytest.raises(ValueError, match="jitter_factor"):
        OCCRetryConfig(jitter_factor=2)
    with pytest.raises(ValueError, match="max_attempts"):
        ConnectRetryConfig(max_attempts=0)


def test_resolve_retry_config_none_inherits_false_is_off():
    """Innermost setting first (the call, then its pool): the same rule for every API."""
    custom = OCCRetryConfig(max_retries=7)
    # None inherits; nothing set anywhere: dsqlkit's default, retry on.
    assert resolve_retry_config(None) == OCCRetryConfig()
    assert resolve_retry_config(None, None) == OCCRetryConfig()
    assert resolve_retry_config(None, custom) is custom
    assert resolve_retry_config(None, False) is None
    # False is off, whatever the pool says; a config or True wins over the pool.
    assert resolve_retry_config(False, custom) is None
    assert resolve_retry_config(custom, False) is custom
    assert resolve_retry_config(True, custom) is custom  # on, with the pool's configuration
    assert resolve_retry_config(True, False) == OCCRetryConfig()
    with pytest.raises(TypeError, match="retry must be"):
        resolve_retry_config(3)  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["psycopg", "psycopg2", "asyncpg", "sqlalchemy", "batch"])
def test_every_api_defaults_retry_to_none_meaning_inherit(module):
    import importlib
    import inspect

    mod = importlib.import_module(f"dsqlkit.{module}")
    found = 0
    for name in mod.__all__:  # the public API, pools included (loaded on first use)
        obj = getattr(mod, name)
        functions = (
            [obj]
            if inspect.isfunction(obj)
            else list(vars(obj).values())
            if inspect.isclass(obj)
            else []
        )
        for function in functions:
            if inspect.isfunction(function) and "retry" in inspect.signature(function).parameters:
                found += 1
                assert inspect.signature(function).parameters["retry"].default is None, (
                    f"{mod.__name__}.{name}: retry= must default to None (inherit)"
                )
    assert found


def test_full_jitter_bounds():
    for attempt in range(70):
        assert 0.0 <= full_jitter(attempt, 0.001, 0.1) <= 0.1
    assert max(full_jitter(0, 0.001, 0.1) for _ in range(100)) <= 0.001


def test_occ_loop_retries_only_occ_and_counts():
    stats.reset()
    calls = []

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise FakeSqlstate(spec.OCC_SQLSTATE)
        return "done"

    assert run_with_occ_retry(flaky, OCCRetryConfig(max_retries=3, base_delay_ms=0.01)) == "done"
    assert len(calls) == 3
    assert stats.snapshot()["occ_retries"] == 2

    def broken():
        calls.append(1)
        raise FakeSqlstate("23505")

    calls.clear()
    with pytest.raises(FakeSqlstate):
        run_with_occ_retry(broken, OCCRetryConfig())
    assert len(calls) == 1


def test_occ_loop_gives_up_after_max_retries():
    calls = []

    def always():
        calls.append(1)
        raise FakeSqlstate(spec.OCC_SQLSTATE)

    with pytest.raises(FakeSqlstate):
        run_with_occ_retry(always, OCCRetryConfig(max_retries=2, base_delay_ms=0.01))
    assert len(calls) == 3
    calls.clear()
    with pytest.raises(FakeSqlstate):
        run_with_occ_retry(always, None)
    assert len(calls) == 1


async def test_async_occ_loop():
    calls = []

    async def flaky():
        calls.append(1)
        await asyncio.sleep(0)
        if len(calls) < 2:
            raise RuntimeError(spec.OCC_DATA_CONFLICT.message)
        return 42

    assert await arun_with_occ_retry(flaky, OCCRetryConfig(base_delay_ms=0.01)) == 42
    assert len(calls) == 2


@pytest.mark.parametrize(
    "exc",
    [
        FakeSqlstate(spec.RATE_EXCEEDED.sqlstate),
        FakeSqlstate(spec.TOO_MANY_CONNECTIONS.sqlstate),
        psycopg.OperationalError(f"connection failed: FATAL:  {spec.RATE_EXCEEDED.message}"),
        psycopg2.OperationalError(f"FATAL:  {spec.TOO_MANY_CONNECTIONS.message}"),
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(),
        psycopg.OperationalError("connection to server at 127.0.0.1 failed: Connection refused"),
        FakeSqlstate("08001"),
    ],
)
def test_transient_connect_errors_are_retryable(exc):
    assert is_retryable_connect_error(exc)


@pytest.mark.parametrize(
    "exc",
    [
        psycopg.OperationalError(f"FATAL:  {spec.ACCESS_DENIED.message}\nHINT: bad signature"),
        FakeSqlstate(spec.ACCESS_DENIED.sqlstate, spec.ACCESS_DENIED.message),
        FakeSqlstate(spec.DATABASE_MISSING.sqlstate),
        FakeSqlstate(spec.USER_MISSING.sqlstate),
        FakeSqlstate(spec.SSL_MANDATORY.sqlstate),
        ValueError("bad argument"),
    ],
)
def test_permanent_connect_errors_are_not_retried(exc):
    assert not is_retryable_connect_error(exc)


def test_connect_error_kind_reads_libpq_messages():
    text = f"connection failed: FATAL:  {spec.RATE_EXCEEDED.message}"
    assert connect_error_kind(psycopg.OperationalError(text)) == spec.RATE_EXCEEDED.sqlstate
    assert connect_error_kind(ValueError("x")) == "ValueError"


def test_connect_backoff_bounded_by_attempts_and_disabled_by_none():
    rate = FakeSqlstate(spec.RATE_EXCEEDED.sqlstate)
    backoff = ConnectBackoff(ConnectRetryConfig(max_attempts=3, base_delay_ms=1, max_delay_ms=1))
    assert backoff.next_delay(rate) is not None
    assert backoff.next_delay(rate) is not None
    assert backoff.next_delay(rate) is None  # the third failure is the last attempt
    assert ConnectBackoff(None).next_delay(rate) is None
    denied = FakeSqlstate(spec.ACCESS_DENIED.sqlstate, spec.ACCESS_DENIED.message)
    assert ConnectBackoff(ConnectRetryConfig()).next_delay(denied) is None


def test_connect_backoff_bounded_by_total_time():
    config = ConnectRetryConfig(
        max_attempts=100, base_delay_ms=2000, max_delay_ms=2000, max_total_s=0.001
    )
    backoff = ConnectBackoff(config)
    delays = [backoff.next_delay(FakeSqlstate(spec.RATE_EXCEEDED.sqlstate)) for _ in range(20)]
    # Each delay is uniform in [0, 2s]; any that would pass the 1 ms budget ends the retries.
    assert None in delays
