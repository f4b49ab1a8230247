"""A local endpoint in a child process, for measurements that must not share a CPU or the GIL.

:class:`~dsqlkit.local.LocalEndpoint` runs the endpoint in a thread of the caller's process: right
for tests, wrong for a benchmark, where the endpoint's work would be timed as the client's.
:class:`EndpointProcess` runs it in a separate Python process and hands back its
:class:`~dsqlkit.local.address.EndpointAddress`. Example::

    with EndpointProcess(added_latency_ms=1.0) as address, address.use_environment():
        conn = dsqlkit.psycopg.connect(**address.connect_kwargs())
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from types import TracebackType
from typing import Any

from dsqlkit.local.address import EndpointAddress

#: How long the child may take to start the endpoint (first start runs initdb).
START_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 30.0


class EndpointProcess:
    """Start a :class:`~dsqlkit.local.LocalEndpoint` with these EndpointConfig fields in a child
    process; ``with`` gives its address and stops it (and its PostgreSQL) at the end."""

    def __init__(self, **fields: Any) -> None:
        self._fields = fields
        self._process: multiprocessing.process.BaseProcess | None = None
        self._pipe: Connection | None = None

    @property
    def pid(self) -> int | None:
        """The endpoint process's id while it runs (to measure its memory or CPU time)."""
        return None if self._process is None else self._process.pid

    def __enter__(self) -> EndpointAddress:
        # spawn, not fork: the parent may have threads (and a running event loop).
        context = multiprocessing.get_context("spawn")
        parent_end, child_end = context.Pipe()
        process = context.Process(
            target=_serve, args=(self._fields, child_end), name="dsqlkit-local", daemon=True
        )
        process.start()
        child_end.close()
        self._process, self._pipe = process, parent_end
        try:
            return self._wait_for_address()
        except BaseException:
            self._stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop()

    def _wait_for_address(self) -> EndpointAddress:
        assert self._pipe is not None and self._process is not None
        if not self._pipe.poll(START_TIMEOUT_SECONDS):
            raise RuntimeError(
                f"the local endpoint process did not start within {START_TIMEOUT_SECONDS:.0f} s"
            )
        try:
            kind, value = self._pipe.recv()
        except EOFError:
            raise RuntimeError(
                f"the local endpoint process exited with code {self._process.exitcode} "
                "before it was ready: run `dsqlkit local --ephemeral --port 0` to see why"
            ) from None
        if kind == "error":
            raise RuntimeError(f"the local endpoint could not start: {value}")
        assert isinstance(value, EndpointAddress)
        return value

    def _stop(self) -> None:
        process, pipe = self._process, self._pipe
        self._process = self._pipe = None
        if pipe is not None:
            with contextlib.suppress(OSError):  # the child may be gone already
                pipe.send("stop")
            pipe.close()
        if process is not None:
            process.join(STOP_TIMEOUT_SECONDS)
            if process.is_alive():
                process.terminate()
                process.join(STOP_TIMEOUT_SECONDS)


def _serve(fields: dict[str, Any], pipe: Connection) -> None:
    """The child: run the endpoint until the parent says stop or goes away."""
    from dsqlkit.local.endpoint import LocalEndpoint

    try:
        endpoint = LocalEndpoint(**fields).start()
    except Exception as exc:  # reported to the parent, which raises it
        pipe.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    try:
        pipe.send(("ready", endpoint.address))
        with contextlib.suppress(EOFError):  # EOF: the parent died, so stop too
            pipe.recv()
    finally:
        endpoint.stop()
