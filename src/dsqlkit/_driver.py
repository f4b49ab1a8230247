"""What the three driver modules share: options, TLS defaults, application_name, the connect loop.

A connect call is planned once (:func:`plan`: parameters resolved, token factory found) and then
opened through :func:`open_sync` / :func:`open_async`, which apply the rate limit, take a token,
call the driver and back off on transient refusals. Pools plan once and open many times.
Nothing here is on the query path: the drivers' own connections are returned.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import time

from dsqlkit import __version__, _log, ratelimit, stats, telemetry
from dsqlkit import dsql as spec
from dsqlkit.auth.tokens import TokenFactory
from dsqlkit.config import ConnectParams, resolve_params
from dsqlkit.retry import ConnectBackoff, ConnectRetryConfig

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing and ssl cost a cold start milliseconds
    import ssl
    from collections.abc import Awaitable, Callable, Iterator, Mapping
    from typing import Any, TypeVar

    T = TypeVar("T")

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


class Plan:
    """One connect call site, resolved once: parameters, token factory, retry and rate policies.

    A plain class (not a dataclass: that import costs a cold start milliseconds); read-only by
    convention, built only by :func:`plan`.
    """

    __slots__ = ("application_name", "driver", "limiter", "params", "retry", "tokens")

    def __init__(
        self,
        driver: str,
        params: ConnectParams,
        tokens: TokenFactory,
        retry: ConnectRetryConfig | None,
        limiter: ratelimit.TokenBucket | None,
        application_name: str,
    ) -> None:
        self.driver = driver
        self.params = params
        self.tokens = tokens
        self.retry = retry
        self.limiter = limiter
        self.application_name = application_name

    def __repr__(self) -> str:
        return f"Plan(driver={self.driver!r}, params={self.params!r}, retry={self.retry!r})"


class DriverOps:
    """What dsqlkit does with one driver: a row of the registry :mod:`dsqlkit.drivers`.

    Defined beside each driver's code (``dsqlkit.psycopg.driver_ops`` ...), so that the helpers
    built on every driver (:mod:`dsqlkit.serverless`, :mod:`dsqlkit.batch`) hold no per-driver
    branches. For an async driver every operation but ``owns``, ``is_connection``, ``state`` and
    ``borrow`` (an async context manager there) is a coroutine function.

    - ``connect(**kwargs)``: dsqlkit's connect; ``transaction(conn, fn, *, retry=None)``: one
      transaction with OCC retry.
    - ``owns(target)``: whether a connection or pool belongs to this driver (and sync/async kind);
      ``is_connection(target)``: a connection rather than a pool.
    - ``state(conn)``: ``"closed"``, ``"idle"`` or ``"open-transaction"`` from the driver's
      flags, without I/O; ``ping(conn)``: a ``SELECT 1`` that leaves it idle;
      ``rollback(conn)``; ``discard(conn)``: close, never raising.
    - ``borrow(target)``: a context manager giving a connection: the target itself, or one taken
      from its pool and given back.
    - ``paramstyle``: ``"format"`` (``%s``) or ``"numeric"`` (``$1``).
    """

    __slots__ = (
        "borrow",
        "connect",
        "discard",
        "is_async",
        "is_connection",
        "name",
        "owns",
        "paramstyle",
        "ping",
        "rollback",
        "state",
        "transaction",
    )

    def __init__(
        self,
        *,
        name: str,
        is_async: bool,
        connect: Callable[..., Any],
        transaction: Callable[..., Any],
        owns: Callable[[object], bool],
        is_connection: Callable[[object], bool],
        state: Callable[[Any], str],
        ping: Callable[[Any], Any],
        rollback: Callable[[Any], Any],
        discard: Callable[[Any], Any],
        borrow: Callable[[Any], Any],
        paramstyle: str,
    ) -> None:
        self.name = name
        self.is_async = is_async
        self.connect = connect
        self.transaction = transaction
        self.owns = owns
        self.is_connection = is_connection
        self.state = state
        self.ping = ping
        self.rollback = rollback
        self.discard = discard
        self.borrow = borrow
        self.paramstyle = paramstyle

    def __repr__(self) -> str:
        return f"DriverOps({self.name!r})"


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


#: libpq's environment variables for the TLS settings dsqlkit gives defaults to.
_LIBPQ_ENV = {
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslnegotiation": "PGSSLNEGOTIATION",
}
#: dsqlkit's default when neither the caller nor libpq's environment chooses.
DEFAULT_SSLMODE = "verify-full"
#: Modes in which libpq allows direct TLS (it needs encryption to be required).
_REQUIRED_MODES = ("require", *_VERIFYING_MODES)
#: Modes asyncpg understands by name and applies itself (it may fall back to plain text).
_ASYNCPG_OPPORTUNISTIC = ("allow", "prefer")


def tls_setting(name: str, given: Mapping[str, Any], environ: Mapping[str, str]) -> str | None:
    """A TLS setting as the driver would see it: the caller's argument, else libpq's
    environment variable (``PGSSLMODE``, ``PGSSLROOTCERT``, ``PGSSLNEGOTIATION``), else None.

    Example::

        >>> tls_setting("sslmode", {}, {"PGSSLMODE": "require"})
        'require'
        >>> tls_setting("sslmode", {"sslmode": "verify-ca"}, {"PGSSLMODE": "require"})
        'verify-ca'
    """
    value = given.get(name)
    if value is None:
        value = environ.get(_LIBPQ_ENV[name]) or None
    return None if value is None else str(value)


def libpq_kwargs(
    plan: Plan, libpq_version: int, environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Keyword arguments for psycopg / psycopg2 ``connect`` (without the password).

    The caller's arguments win, then libpq's environment (``PGSSLMODE``, ``PGSSLROOTCERT``,
    ``PGSSLNEGOTIATION``, read by libpq itself); only what neither sets gets dsqlkit's default:
    ``sslmode=verify-full``, ``sslrootcert=system`` (libpq >= 16, verifying modes) and
    ``sslnegotiation=direct`` (libpq >= 17, when encryption is required).
    """
    environ = os.environ if environ is None else environ
    params = plan.params
    extra = dict(params.driver_kwargs)
    sslmode = tls_setting("sslmode", extra, environ)
    if sslmode is None:
        sslmode = extra["sslmode"] = DEFAULT_SSLMODE
    if (
        tls_setting("sslrootcert", extra, environ) is None
        and sslmode in _VERIFYING_MODES
        and libpq_version >= _LIBPQ_SYSTEM_ROOTS
    ):
        extra["sslrootcert"] = "system"
    if (
        tls_setting("sslnegotiation", extra, environ) is None
        and sslmode in _REQUIRED_MODES
        and libpq_version >= _LIBPQ_DIRECT_TLS
    ):
        extra["sslnegotiation"] = "direct"
    return {
        "host": params.host,
        "port": params.port,
        "user": params.user,
        "dbname": params.dbname,
        "application_name": plan.application_name,
        **extra,
    }


def asyncpg_kwargs(plan: Plan, environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` (without the password).

    Without ``ssl=``: ``sslmode`` / ``sslrootcert`` / ``sslnegotiation`` (arguments, else libpq's
    environment, else verify-full with the system CAs over direct TLS) become an
    ``ssl.SSLContext`` that dsqlkit builds, with ALPN ``postgresql``; ``direct_tls=`` wins.
    ``ssl='<mode>'`` is taken as ``sslmode`` (as by the official connector). With the caller's
    own ``ssl=`` (an ``SSLContext``, or True) it is used as is and negotiated with SSLRequest, unless the caller asks for direct TLS (``direct_tls=True`` or
    ``sslnegotiation='direct'``): a context dsqlkit did not build may offer no ALPN.
    """
    environ = os.environ if environ is None else environ
    params = plan.params
    extra = dict(params.driver_kwargs)
    given = {name: extra.pop(name, None) for name in _LIBPQ_ENV}
    direct = extra.pop("direct_tls", None)
    if isinstance(extra.get("ssl"), str):  # a mode name: as the official connector, a sslmode
        if given["sslmode"] is not None:
            raise ValueError("give ssl='<mode>' or sslmode='<mode>', not both")
        given["sslmode"] = extra.pop("ssl")
    if "ssl" in extra:
        if given["sslmode"] is not None or given["sslrootcert"] is not None:
            raise ValueError(
                "give either ssl= (your ssl.SSLContext, used as is) or sslmode= / "
                "sslrootcert=, not both"
            )
        ssl_arg = extra.pop("ssl")
        if direct is None:
            direct = given["sslnegotiation"] == "direct"
    else:
        ssl_arg, default_direct = _asyncpg_tls(given, environ)
        if direct is None:
            direct = default_direct
    settings = dict(extra.pop("server_settings", None) or {})
    settings.setdefault("application_name", plan.application_name)
    return {
        "host": params.host,
        "port": params.port,
        "user": params.user,
        "database": params.dbname,
        "server_settings": settings,
        "ssl": ssl_arg,
        "direct_tls": bool(direct) and ssl_arg is not False,
        **extra,
    }


def _asyncpg_tls(given: Mapping[str, Any], environ: Mapping[str, str]) -> tuple[Any, bool]:
    """asyncpg's ``ssl=`` and whether to use direct TLS, from libpq-style settings."""
    sslmode = tls_setting("sslmode", given, environ) or DEFAULT_SSLMODE
    if sslmode in _ASYNCPG_OPPORTUNISTIC:
        return sslmode, False  # asyncpg's own negotiation, with its fallback to plain text
    context = client_context(sslmode, tls_setting("sslrootcert", given, environ))
    negotiation = tls_setting("sslnegotiation", given, environ) or "direct"
    return context, context is not False and negotiation == "direct"


@functools.lru_cache(maxsize=16)
def client_context(sslmode: str, rootcert: str | None = None) -> ssl.SSLContext | bool:
    """An ``ssl.SSLContext`` for ``sslmode`` (libpq's names), trusting ``rootcert`` or the system
    CAs (``None`` or ``"system"``), offering ALPN ``postgresql`` (for direct TLS).

    Cached: building a context (loading the CA store) costs milliseconds; a context is reusable.

    Example::

        ctx = client_context("verify-full", "/path/to/ca.pem")
    """
    import ssl  # here: the libpq drivers never need it

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
        import asyncio  # loaded already by any async caller; sync users never pay for it

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
            _log.debug("rollback failed: %s", type(exc).__name__)
        raise
    finally:
        if autocommit and not conn.closed:
            conn.autocommit = True


def jittered_expiry(max_lifetime: float) -> float:
    """A monotonic deadline ``max_lifetime`` from now, minus up to 5% so a pool's connections
    made together do not all expire together (psycopg_pool's rule)."""
    import random  # pools only: not on the path of a single connect

    return time.monotonic() + max_lifetime * (1 - 0.05 * random.random())


def check_lifetimes(max_lifetime: float, max_idle: float | None = None) -> None:
    """Clear errors for pool lifetime settings."""
    if not max_lifetime > 0:
        raise ValueError(f"max_lifetime must be > 0 seconds, got {max_lifetime!r}")
    if max_idle is not None and max_idle < 0:
        raise ValueError(f"max_idle must be >= 0 seconds (0: never), got {max_idle!r}")
