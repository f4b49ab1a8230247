"""Optional OpenTelemetry spans for connects and tokens: used only when ``opentelemetry`` is installed.

With ``opentelemetry-api`` importable, every dsqlkit connect is a span ``dsqlkit.connect``
(attributes: driver, host; an error status and the exception when it fails) with a child span
``dsqlkit.token`` per token. Without it nothing is imported and :func:`span` returns a shared
no-op context: no cost on the connect path. Spans go to the global tracer provider, or to the
one given to :func:`configure`::

    from opentelemetry.sdk.trace import TracerProvider
    import dsqlkit.telemetry

    dsqlkit.telemetry.configure(tracer_provider=TracerProvider())   # or rely on the global one
    dsqlkit.telemetry.configure(enabled=False)                       # no spans at all
"""

from __future__ import annotations

import contextlib

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: importing typing costs a cold start ~7 ms
    from collections.abc import Iterator
    from contextlib import AbstractContextManager
    from typing import Any

__all__ = ["available", "configure", "span"]

_NOOP: AbstractContextManager[Any] = contextlib.nullcontext()


def _installed() -> bool:
    import importlib.util  # at the first span, not at import: it costs a cold start ~2 ms

    try:  # find_spec locates the package without importing it
        return importlib.util.find_spec("opentelemetry.trace") is not None
    except (ImportError, ValueError):
        return False


#: None until the first span asks (then whether opentelemetry is installed), or configure()'s.
_enabled: bool | None = None
_provider: Any = None
_tracer: Any = None


def available() -> bool:
    """Whether spans are being made (opentelemetry importable and not disabled)."""
    global _enabled
    if _enabled is None:
        _enabled = _installed()
    return _enabled


def configure(*, enabled: bool | None = None, tracer_provider: Any = None) -> None:
    """Turn spans on or off, or send them to ``tracer_provider`` instead of the global one.

    Example::

        configure(tracer_provider=provider)
    """
    global _enabled, _provider, _tracer
    if enabled is not None:
        _enabled = enabled and _installed()
    if tracer_provider is not None:
        _provider = tracer_provider
    _tracer = None


def _get_tracer() -> Any:
    global _tracer
    if _tracer is None:
        from opentelemetry import trace

        from dsqlkit import __version__

        _tracer = trace.get_tracer("dsqlkit", __version__, tracer_provider=_provider)
    return _tracer


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A context manager around one operation: an OpenTelemetry span, or a no-op.

    Example::

        with span("dsqlkit.connect", driver="psycopg") as current:
            ...
    """
    if not (_enabled if _enabled is not None else available()):
        return _NOOP
    return _span(name, attributes)


@contextlib.contextmanager
def _span(name: str, attributes: dict[str, Any]) -> Iterator[Any]:
    with _get_tracer().start_as_current_span(name, attributes=attributes) as current:
        yield current
