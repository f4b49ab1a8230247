"""Classification of long statement texts in a worker process, so no client stalls the others.

:func:`dsqlkit.local.rules.dialect.classify_now` classifies short texts (and any text already
cached) on the event loop; longer ones come here. The cost is in C (libpg_query's parse, then
``json.loads`` of a parse tree ~40 times the text's size) that holds the GIL for the whole call,
seconds for a few megabytes, so a thread would stall the event loop just the same: a process does
not. One worker per endpoint process, started on first need, serves one text at a time (others
queue behind it; each waiting session is paused, so a session has at most one text queued).

Budgets (emulator decisions, ``spec.STATEMENT_TOO_COMPLEX``): a text whose classification takes
longer than :data:`BUDGET_SECONDS`, or needs more than :data:`MEMORY_LIMIT` of address space
in the worker, is refused with that error; the worker is replaced, and nothing else is lost.

Example::

    verdict = await classify_off_loop(sql)  # a dialect.Verdict, as classify(sql) would give
"""

from __future__ import annotations

import asyncio
import atexit
import os
import pickle
import select
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from dsqlkit import dsql as spec
from dsqlkit.local.rules import dialect

__all__ = ["BUDGET_SECONDS", "MEMORY_LIMIT", "Worker", "classify_off_loop"]

#: The longest a classification may take in the worker before the text is refused.
BUDGET_SECONDS = 30.0
#: The worker's address-space limit: beyond it a text is refused (RLIMIT_AS; the interpreter
#: and pglast take ~25 MiB of it). A 2 MB bulk INSERT needs ~400 MiB; 2 MB of ``SELECT 1,1,...``
#: (a million columns, which PostgreSQL refuses anyway) 1.7 GiB.
MEMORY_LIMIT = 2 << 30
_LENGTH = struct.Struct("!Q")


class Worker:
    """One worker process and the thread that talks to it (blocking pipe I/O, off the loop)."""

    def __init__(
        self, *, budget_seconds: float = BUDGET_SECONDS, memory_limit: int = MEMORY_LIMIT
    ) -> None:
        self.budget_seconds = budget_seconds
        self.memory_limit = memory_limit
        self._process: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()
        self._io = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dsqlkit-classify")
        #: Texts refused for their budget, and worker processes started (tests and stats).
        self.refused = 0
        self.started = 0

    async def classify(self, sql: str) -> dialect.Verdict:
        """``dialect.classify(sql)``, computed in the worker; a budget overrun is a refusal."""
        loop = asyncio.get_running_loop()
        verdict = await loop.run_in_executor(self._io, self._classify, sql)
        if verdict is None:
            self.refused += 1
            return _too_complex(self)
        dialect.remember(sql, verdict)
        return verdict

    def close(self) -> None:
        """End the worker process and its thread (this Worker serves no more texts)."""
        with self._lock:
            self._stop()
        self._io.shutdown(wait=False)

    def _classify(self, sql: str) -> dialect.Verdict | None:
        with self._lock:
            process = self._running()
            assert process.stdin is not None and process.stdout is not None
            try:
                _send(process.stdin.fileno(), sql.encode("utf-8", "surrogatepass"))
                deadline = time.monotonic() + self.budget_seconds
                reply = _receive(process.stdout.fileno(), deadline)
            except (OSError, TimeoutError, EOFError):
                reply = None
            if reply is None:
                self._stop()  # over budget, or it died (memory): a fresh one for the next text
                return None
            answer = pickle.loads(reply)  # our own worker wrote it
            if isinstance(answer, spec.DsqlError):  # nested deeper than Python's stack
                return _refusing(answer)
            return answer if isinstance(answer, dialect.Verdict) else None

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", __name__, str(self.memory_limit)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
            self.started += 1
        return self._process

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


def _too_complex(worker: Worker) -> dialect.Verdict:
    error = spec.STATEMENT_TOO_COMPLEX.format(
        seconds=int(worker.budget_seconds), mib=worker.memory_limit >> 20
    )
    return _refusing(error)


def _refusing(error: spec.DsqlError) -> dialect.Verdict:
    return dialect.Verdict((dialect.Statement(dialect.Kind.OTHER, "", error),))


def _send(fd: int, data: bytes) -> None:
    view = memoryview(_LENGTH.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view) :]


def _receive(fd: int, deadline: float | None) -> bytes | None:
    """One framed message; None at EOF. ``deadline`` (monotonic) raises TimeoutError."""
    header = _read_exactly(fd, _LENGTH.size, deadline)
    if header is None:
        return None
    return _read_exactly(fd, _LENGTH.unpack(header)[0], deadline)


def _read_exactly(fd: int, size: int, deadline: float | None) -> bytes | None:
    chunks, missing = [], size
    while missing:
        if deadline is not None:
            timeout = deadline - time.monotonic()
            if timeout <= 0 or not select.select([fd], [], [], timeout)[0]:
                raise TimeoutError
        chunk = os.read(fd, min(missing, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        missing -= len(chunk)
    return b"".join(chunks)


_shared: Worker | None = None


def shared_worker() -> Worker:
    """The process's worker (created on first use, ended at exit)."""
    global _shared
    if _shared is None:
        _shared = Worker()
        atexit.register(_shared.close)
    return _shared


async def classify_off_loop(sql: str) -> dialect.Verdict:
    """Classify ``sql`` in the shared worker process (see the module's docstring)."""
    return await shared_worker().classify(sql)


def _serve(memory_limit: int) -> None:
    """The worker's main loop: texts in on stdin, pickled verdicts out on stdout, until EOF."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    while (data := _receive(0, None)) is not None:
        answer: dialect.Verdict | spec.DsqlError | None
        try:
            answer = dialect.classify_uncached(data.decode("utf-8", "surrogatepass"))
        except MemoryError:
            answer = None  # over the memory budget
        except RecursionError:  # as on the event loop (wire/session.py): PostgreSQL's answer
            answer = spec.STACK_DEPTH_EXCEEDED
        _send(1, pickle.dumps(answer))


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
