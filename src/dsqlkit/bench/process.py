"""The benchmark's client processes: a fresh Python with the resolver shim and the Lambda CPU model.

Every measurement runs in a child process, never in the benchmark's own: the rows (one child for
all of them, like one warm Lambda container), each cold start (one child each) and each container
of the storm. :class:`ClientModel` says what that child sees: names that resolve to the local
endpoint (:mod:`~dsqlkit.bench.resolver`) and its CPU share (:mod:`~dsqlkit.bench.throttle`).

Example::

    model = ClientModel(cpu_share=lambda_cpu_share(256), resolve={"x.dsql...": "127.0.0.1"})
    done = run_python(["-c", "print(1)"], model)
    print(done.stdout, done.cpu_share)
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from dsqlkit.bench import resolver
from dsqlkit.bench.throttle import DutyCycleThrottle

#: Lines a child writes to stderr with this prefix are progress, handed to the parent's callback.
PROGRESS_PREFIX = "dsqlkit-bench-progress: "


@dataclass(frozen=True)
class ClientModel:
    """What a client child process sees: ``cpu_share`` of a CPU (None: unthrottled) and host
    names answered with a local address (``resolve``)."""

    cpu_share: float | None = None
    resolve: Mapping[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        """``os.environ`` plus what installs the resolver shim in the child."""
        return {**os.environ, **resolver.child_environment(dict(self.resolve))}

    def throttle(self, pid: int) -> DutyCycleThrottle:
        return DutyCycleThrottle(pid, self.cpu_share if self.cpu_share is not None else 1.0)


@dataclass(frozen=True)
class ChildResult:
    """A finished child: exit status, output, and the CPU share it actually got."""

    returncode: int
    stdout: str
    stderr: str
    wall_ms: float
    cpu_share: float | None

    def last_error_line(self) -> str:
        return (self.stderr.strip().splitlines() or ["no output"])[-1]


def spawn(args: Sequence[str], model: ClientModel) -> subprocess.Popen[str]:
    """Start ``python <args>`` with the model's environment (pipes for stdin, stdout, stderr)."""
    return subprocess.Popen(
        [sys.executable, *args],
        env=model.environment(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_python(
    args: Sequence[str],
    model: ClientModel,
    *,
    stdin: str = "",
    on_progress: Callable[[str], None] | None = None,
    timeout: float = 600.0,
) -> ChildResult:
    """Run ``python <args>`` to completion under ``model``; progress lines go to ``on_progress``."""
    start = time.perf_counter()
    process = spawn(args, model)
    errors: list[str] = []
    reader = threading.Thread(target=_read_stderr, args=(process, errors, on_progress), daemon=True)
    reader.start()
    # A timer, not communicate(timeout=): stderr is read by the thread above.
    killer = threading.Timer(timeout, _kill, args=(process, errors, timeout))
    killer.start()
    assert process.stdin is not None and process.stdout is not None
    with model.throttle(process.pid) as throttle:
        try:
            process.stdin.write(stdin)
            process.stdin.close()
        except BrokenPipeError:
            pass  # the child exited early: its stderr says why
        stdout = process.stdout.read()
        process.wait()
    killer.cancel()
    reader.join()
    wall_ms = (time.perf_counter() - start) * 1000
    share = throttle.budget.achieved_share() if throttle.active else None
    return ChildResult(process.returncode, stdout, "\n".join(errors), wall_ms, share)


def _kill(process: subprocess.Popen[str], errors: list[str], timeout: float) -> None:
    process.kill()
    errors.append(f"the child process did not finish within {timeout:.0f} s")


def _read_stderr(
    process: subprocess.Popen[str],
    errors: list[str],
    on_progress: Callable[[str], None] | None,
) -> None:
    assert process.stderr is not None
    for line in process.stderr:
        if line.startswith(PROGRESS_PREFIX):
            if on_progress is not None:
                on_progress(line[len(PROGRESS_PREFIX) :].rstrip("\n"))
        else:
            errors.append(line.rstrip("\n"))


def report_progress(text: str) -> None:
    """In a child: tell the parent about a step (one line on stderr)."""
    print(f"{PROGRESS_PREFIX}{text}", file=sys.stderr, flush=True)
