"""What the three driver modules share: options, TLS defaults, application_name, the connect loop.

A connect call is planned once (:func:`plan`: parameters resolved, token factory found) and then
opened through :func:`open_sync` / :func:`open_async`, which apply the rate limit, take a token,
call the driver and back off on transient refusals. Pools plan once and open many times.
Nothing here is on the query path: the drivers' own connections are returned.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import ssl
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

from dsqlkit import __version__, ratelimit, stats, telemetry
from dsqlkit import dsql as spec
from dsqlkit.auth.tokens import TokenFactory
from dsqlkit.config import ConnectParams, resolve_params
from dsqlkit.retry import ConnectBackoff, ConnectRetryConfig

T = TypeVar("T")
logger = logging.getLogger("dsqlkit")

#: PostgreSQL keeps 63 bytes of application_name (NAMEDATALEN - 1).
_APPLICATION_NAME_MAX = 63
#: Pool defaults shared by every driver (the other official connectors' choices).
POOL_MAX_LIFETIME = 55 * 60.0
POOL_MAX_IDLE = 10 * 60.0
#: libpq versions that know sslrootcert=system and sslnegotiation=direct.
_LIBPQ_SYSTEM_ROOTS = 160000
_LIBPQ_DIRECT_TLS = 170000
_VERIFYING_MODES = ("verify-ca", "verify-full")


class _Default:
    def __repr__(self) -> str:
        return "DEFAULT"


#: "Not given": use dsqlkit's default (connect backoff on).
DEFAULT: Any = _Default()


@dataclasses.dataclass(frozen=True)
class Plan:
    """One connect call site, resolved once: parameters, token factory, retry and rate policies."""

    driver: str
    params: ConnectParams
    tokens: TokenFactory
    retry: ConnectRetryConfig | None
    limiter: ratelimit.TokenBucket | None
    application_name: str


def plan(driver: str, dsn: str | None, kwargs: dict[str, Any]) -> Plan:
    """Resolve a connect call's arguments (the official connector's, plus dsqlkit's options).

    dsqlkit's own options, taken out of ``kwargs`` before the rest goes to the driver:
    ``connect_retry`` (a :class:`ConnectRetryConfig`, None to disable), ``rate_limit`` (a
    :class:`~dsqlkit.ratelimit.TokenBucket`, None to disable) and ``orm_prefix``.
    """
    kwargs = dict(kwargs)
    retry = kwargs.pop("connect_retry", DEFAULT)
    if isinstance(retry, _Default):
        retry = ConnectRetryConfig()
    elif retry is not None and not isinstance(retry, ConnectRetryConfig):
        raise TypeError(
            "connect_retry must be a dsqlkit.retry.ConnectRetryConfig or None (no retry), "
            f"got {type(retry).__name__}"
        )
    limiter = ratelimit.resolve(kwargs.pop("rate_limit", ratelimit.DEFAULT))
    # The official connector takes application_name as the ORM prefix: so do we.
    prefix = kwargs.pop("orm_prefix", None) or kwargs.pop("application_name", None)
    params = resolve_params(dsn, **kwargs)
    return Plan(
        driver, params, tokens_for(params), retry, limiter, application_name(driver, prefix)
    )


def application_name(driver: str, prefix: str | None = None) -> str:
    """``dsqlkit-<driver>/<version>``, after ``<prefix>:`` when an ORM prefix is given.

    Example::

        >>> application_name("psycopg", "sqlalchemy")
        'sqlalchemy:dsqlkit-psycopg/0.1.0'
    """
    name = f"dsqlkit-{driver}/{__version__}"
    prefix = (prefix or "").strip()
    if not prefix:
        return name
    room = _APPLICATION_NAME_MAX - len(name) - 1  # keep our part whole: it identifies the client
    return f"{prefix[: max(room, 0)]}:{name}"


_factories: dict[tuple[Any, ...], TokenFactory] = {}
_factories_lock = threading.Lock()


def tokens_for(params: ConnectParams) -> TokenFactory:
    """The process's token factory for these parameters, so credentials are looked up once.

    Call sites that connect each time (Lambda handlers, scripts) share one factory, and so its
    cached token and credentials, instead of creating one per connection.
    """
    key = (
        params.host,
        params.region,
        params.user,
        params.profile,
        params.token_duration_secs,
        params.custom_credentials_provider,
    )
    try:
        hash(key)
    except TypeError:  # an unhashable custom provider: no sharing
        return TokenFactory(params)
    with _factories_lock:
        factory = _factories.get(key)
        if factory is None:
            if len(_factories) >= 64:  # bounded: forget the oldest
                _factories.pop(next(iter(_factories)))
            factory = _factories[key] = TokenFactory(params)
    return factory


# --- TLS and driver arguments ------------------------------------------------------------------


def libpq_kwargs(plan: Plan, libpq_version: int) -> dict[str, Any]:
    """Keyword arguments for psycopg / psycopg2 ``connect`` (without the password).

    Defaults: ``sslmode=verify-full``, ``sslrootcert=system`` (libpq >= 16) and
    ``sslnegotiation=direct`` (libpq >= 17); each one given by the caller wins.
    """
    params = plan.params
    extra = dict(params.driver_kwargs)
    sslmode = extra.setdefault("sslmode", "verify-full")
    if sslmode in _VERIFYING_MODES and libpq_version >= _LIBPQ_SYSTEM_ROOTS:
        extra.setdefault("sslrootcert", "system")
    # Direct TLS needs encryption to be required; libpq refuses it with weaker modes.
    if sslmode not in ("disable", "allow", "prefer") and libpq_version >= _LIBPQ_DIRECT_TLS:
        extra.setdefault("sslnegotiation", "direct")
    return {
        "host": params.host,
        "port": params.port,
        "user": params.user,
        "dbname": params.dbname,
        "application_name": plan.application_name,
        **extra,
    }


def asyncpg_kwargs(plan: Plan) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` (without the password).

    ``sslmode`` / ``sslrootcert`` (as for libpq) become an ``ssl.SSLContext``; direct TLS with ALPN
    ``postgresql`` is on unless ``direct_tls=False`` or ``sslnegotiation='postgres'``. An ``ssl=``
    given by the caller is used as is.
    """
    params = plan.params
    extra = dict(params.driver_kwargs)
    sslmode = extra.pop("sslmode", "verify-full")
    rootcert = extra.pop("sslrootcert", None)
    negotiation = extra.pop("sslnegotiation", "direct")
    if "ssl" not in extra:
        extra["ssl"] = client_context(sslmode, rootcert)
    if extra["ssl"] is not False and sslmode != "disable":
        extra.setdefault("direct_tls", negotiation == "direct")
    settings = dict(extra.pop("server_settings", None) or {})
    settings.setdefault("application_name", plan.application_name)
    return {
        "host": params.host,
        "port": params.port,
        "user": params.user,
        "database": params.dbname,
        "server_settings": settings,
        **extra,
    }


@functools.lru_cache(maxsize=16)
def client_context(sslmode: str, rootcert: str | None = None) -> ssl.SSLContext | bool:
    """An ``ssl.SSLContext`` for ``sslmode`` (libpq's names), trusting ``rootcert`` or the system CAs.

    Cached: building a context (loading the CA store) costs milliseconds; a context is reusable.

    Example::

        ctx = client_context("verify-full", "/path/to/ca.pem")
    """
    if sslmode == "disable":
        return False
    if sslmode not in ("allow", "prefer", "require", *_VERIFYING_MODES):
        raise ValueError(
            f"invalid sslmode {sslmode!r}: use one of disable, allow, prefer, require, "
            "verify-ca, verify-full (verify-full is the safe default)"
        )
    use_file = rootcert not in (None, "system")
    context = ssl.create_default_context(cafile=rootcert if use_file else None)
    if sslmode not in _VERIFYING_MODES:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = sslmode == "verify-full"
    context.set_alpn_protocols([spec.ALPN_PROTOCOL])
    return context


# --- Opening connections -----------------------------------------------------------------------


@contextlib.contextmanager
def _token_taken() -> Iterator[None]:
    """Around taking a token: its span, then its count and time in :mod:`dsqlkit.stats`."""
    started = time.perf_counter()
    with telemetry.span("dsqlkit.token"):
        yield
    stats.add("token_count")
    stats.add("token_seconds", time.perf_counter() - started)


def _hide(exc: BaseException, password: str) -> None:
    """Make sure the token never shows in an error: drivers may echo the connection string."""
    if any(isinstance(arg, str) and password in arg for arg in exc.args):
        exc.args = tuple(
            arg.replace(password, "<token>") if isinstance(arg, str) else arg for arg in exc.args
        )


def _retry_delay(exc: Exception, password: str, backoff: ConnectBackoff) -> float | None:
    """After a failed open: the token hidden from ``exc``, then the wait before the next try
    (None: not transient, or out of attempts; the caller re-raises)."""
    _hide(exc, password)
    return backoff.next_delay(exc)


def _opened(connection: T) -> T:
    stats.add("connections_opened")
    return connection


def open_sync(plan: Plan, open_: Callable[[str], T]) -> T:
    """Open a connection with ``open_(password)``: rate limit, token, backoff on transient refusals."""
    with telemetry.span("dsqlkit.connect", driver=plan.driver, host=plan.params.host):
        return _open_sync(plan, open_)


def _open_sync(plan: Plan, open_: Callable[[str], T]) -> T:
    backoff = ConnectBackoff(plan.retry)
    while True:
        if plan.limiter is not None:
            plan.limiter.acquire()
        with _token_taken():
            password = plan.tokens.token()
        try:
            connection = open_(password)
        except Exception as exc:
            delay = _retry_delay(exc, password, backoff)
            if delay is None:
                raise
        else:
            return _opened(connection)
        time.sleep(delay)


async def open_async(plan: Plan, open_: Callable[[str], Awaitable[T]]) -> T:
    """Async twin of :func:`open_sync`: never blocks the event loop."""
    with telemetry.span("dsqlkit.connect", driver=plan.driver, host=plan.params.host):
        return await _open_async(plan, open_)


async def _open_async(plan: Plan, open_: Callable[[str], Awaitable[T]]) -> T:
    backoff = ConnectBackoff(plan.retry)
    while True:
        if plan.limiter is not None:
            await plan.limiter.aacquire()
        with _token_taken():
            password = await plan.tokens.atoken()
        try:
            connection = await open_(password)
        except Exception as exc:
            delay = _retry_delay(exc, password, backoff)
            if delay is None:
                raise
        else:
            return _opened(connection)
        await asyncio.sleep(delay)


def commit_or_rollback(conn: Any, callback: Callable[[Any], T], *, autocommit: bool) -> T:
    """Run ``callback(conn)`` in the transaction open on a sync libpq connection (autocommit
    off): commit, or roll back and re-raise; then turn autocommit back on if it was."""
    try:
        result = callback(conn)
        conn.commit()
        return result
    except BaseException:
        try:
            conn.rollback()
        except Exception as exc:  # a broken connection: the original error matters more
            logger.debug("rollback failed: %s", type(exc).__name__)
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True


def jittered_expiry(max_lifetime: float) -> float:
    """A monotonic deadline ``max_lifetime`` from now, minus up to 5% so a pool's connections
    made together do not all expire together (psycopg_pool's rule)."""
    return time.monotonic() + max_lifetime * (1 - 0.05 * random.random())


def check_lifetimes(max_lifetime: float, max_idle: float | None = None) -> None:
    """Clear errors for pool lifetime settings."""
    if not max_lifetime > 0:
        raise ValueError(f"max_lifetime must be > 0 seconds, got {max_lifetime!r}")
    if max_idle is not None and max_idle < 0:
        raise ValueError(f"max_idle must be >= 0 seconds (0: never), got {max_idle!r}")
