"""The Lambda CPU model: a client process held to the CPU share Lambda gives a memory size.

AWS Lambda allocates CPU in proportion to memory: "at 1,769 MB, a function has the equivalent of
one vCPU (one vCPU-second of credits per second)" (AWS Lambda Developer Guide, "Configuring
Lambda function memory", https://docs.aws.amazon.com/lambda/latest/dg/configuration-memory.html).
So a 256 MB function gets 256 / 1769 = 0.145 of a vCPU, which is why CPU-bound work (signing a
token, building an SDK client, a TLS handshake, importing modules) takes about 7x longer there than
on a full core.

:class:`DutyCycleThrottle` reproduces that share without root and without cgroups: a controller
thread reads the child's CPU time every ``period`` and, when the child has used more than its
share, stops it (``SIGSTOP``) until the share has paid for what it used, then resumes it
(``SIGCONT``). The accounting is a token bucket of CPU time (:class:`CpuBudget`, sans-I/O, tested
with an injected clock): it refills at ``share`` CPU-seconds per wall second and holds at most one
period's worth, like the kernel's CFS quota (``cpu.max``), which does not carry unused time over
either. A process that waits on the network uses no CPU and is not stopped, as on Lambda.
``benchmarks/bench_throttle.py`` shows a CPU-bound loop takes 1/share as long.

cgroups v2 (``cpu.max``) would do the same in the kernel; it needs a writable cgroup v2 hierarchy,
which this benchmark does not assume (and the recorded machine has cgroups v1 only), so the
duty cycle is the one mechanism, used everywhere.

Example::

    share = lambda_cpu_share(256)                  # 0.1447...
    process = subprocess.Popen([sys.executable, "-c", "..."])
    with DutyCycleThrottle(process.pid, share):
        process.wait()
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

#: Lambda's memory per vCPU (see the module docstring for the citation).
LAMBDA_MB_PER_VCPU = 1769
#: Lambda's memory sizes, in MB.
LAMBDA_MIN_MEMORY_MB = 128
LAMBDA_MAX_MEMORY_MB = 10_240
#: The duty cycle's period: the controller's tick and the most CPU time saved up (x share).
DEFAULT_PERIOD_S = 0.010
#: A debt smaller than this (a microsecond of CPU, float rounding) is not worth a stop.
_NEGLIGIBLE_CPU_S = 1e-6


def lambda_cpu_share(memory_mb: int) -> float:
    """The vCPU share of a Lambda function with ``memory_mb`` of memory (1.0 at 1,769 MB).

    Example::

        >>> round(lambda_cpu_share(256), 4)
        0.1447
    """
    if not LAMBDA_MIN_MEMORY_MB <= memory_mb <= LAMBDA_MAX_MEMORY_MB:
        raise ValueError(
            f"Lambda memory must be between {LAMBDA_MIN_MEMORY_MB} and {LAMBDA_MAX_MEMORY_MB} MB, "
            f"got {memory_mb} (example: --lambda-memory 256)"
        )
    return memory_mb / LAMBDA_MB_PER_VCPU


@dataclass
class CpuBudget:
    """The duty cycle's accounting: CPU seconds the process may still use, refilled at ``share``
    per wall second, at most ``share * period`` saved up.

    Feed it (wall time, the process's total CPU time) at every tick; :meth:`update` answers how
    long to keep the process stopped. Example::

        budget = CpuBudget(share=0.25, period=0.01, start=0.0)
        budget.update(now=0.01, cpu=0.01)   # used 10 ms, earned 2.5 ms: stop for 0.03 s
    """

    share: float
    period: float
    start: float
    budget: float = 0.0
    last_wall: float = 0.0
    last_cpu: float = 0.0
    stopped: float = 0.0  # wall seconds the process was told to stay stopped, in total

    def __post_init__(self) -> None:
        if not 0 < self.share <= 1:
            raise ValueError(f"share must be in (0, 1], got {self.share!r}")
        if not self.period > 0:
            raise ValueError(f"period must be positive, got {self.period!r}")
        self.budget = self.capacity
        self.last_wall = self.start

    @property
    def capacity(self) -> float:
        return self.share * self.period

    def update(self, now: float, cpu: float) -> float:
        """Account for the CPU time used since the last call; seconds to stop (0.0: let it run)."""
        earned = self.share * max(0.0, now - self.last_wall)
        used = max(0.0, cpu - self.last_cpu)
        # What was saved up is capped at one period's share; what this interval earned is not.
        self.budget = min(self.capacity, self.budget) + earned - used
        self.last_wall, self.last_cpu = now, cpu
        if self.budget > -_NEGLIGIBLE_CPU_S:
            return 0.0
        delay = -self.budget / self.share
        self.stopped += delay
        return delay

    def achieved_share(self) -> float:
        """CPU time used per wall second since ``start`` (the share the process really got)."""
        elapsed = self.last_wall - self.start
        return self.last_cpu / elapsed if elapsed > 0 else 0.0


def process_cpu_clock(pid: int) -> Callable[[], float]:
    """A function returning ``pid``'s CPU time (user + system, all threads) in seconds.

    Uses the process's POSIX CPU-time clock (nanoseconds) where libc offers
    ``clock_getcpuclockid``, else ``/proc/<pid>/stat`` (clock ticks, usually 10 ms).
    """
    clock_id = _cpu_clock_id(pid)
    if clock_id is not None:
        return lambda: time.clock_gettime(clock_id)
    ticks = os.sysconf("SC_CLK_TCK")

    def from_proc() -> float:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / ticks

    return from_proc


def _cpu_clock_id(pid: int) -> int | None:
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        clock = ctypes.c_int()
        if libc.clock_getcpuclockid(pid, ctypes.byref(clock)) != 0:
            return None
        time.clock_gettime(clock.value)  # probe: the clock must be readable
        return clock.value
    except (OSError, AttributeError):
        return None


class DutyCycleThrottle:
    """Hold process ``pid`` to ``share`` of a CPU while the ``with`` block runs (see the module
    docstring). ``share >= 1`` does nothing. ``clock``, ``cpu``, ``sleep`` and ``send`` are
    injectable for tests; the defaults are the real monotonic clock, the process's CPU clock,
    ``time.sleep`` and ``os.kill``.
    """

    def __init__(
        self,
        pid: int,
        share: float,
        *,
        period: float = DEFAULT_PERIOD_S,
        clock: Callable[[], float] = time.monotonic,
        cpu: Callable[[], float] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        send: Callable[[int, int], None] = os.kill,
    ) -> None:
        self.pid, self.period = pid, period
        self.active = share < 1
        self.budget = CpuBudget(min(share, 1.0), period, clock())
        self._clock, self._sleep, self._send = clock, sleep, send
        self._cpu = cpu
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> DutyCycleThrottle:
        if self.active:
            try:
                cpu = self._cpu or process_cpu_clock(self.pid)
            except OSError:  # the process is already gone: nothing to throttle
                return self
            self._thread = threading.Thread(
                target=self._run, args=(cpu,), name="dsqlkit-throttle", daemon=True
            )
            self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._done.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self, cpu: Callable[[], float]) -> None:
        try:
            while not self._done.is_set():
                self.tick(cpu())
        except (OSError, ValueError):
            pass  # the process exited (its clock and /proc entry are gone): nothing to hold

    def tick(self, cpu_seconds: float) -> None:
        """One controller step: account, and stop the process for as long as it overspent."""
        delay = self.budget.update(self._clock(), cpu_seconds)
        if delay <= 0:
            self._sleep(self.period)
            return
        self._send(self.pid, signal.SIGSTOP)
        try:
            self._sleep(delay)
        finally:
            self._send(self.pid, signal.SIGCONT)
