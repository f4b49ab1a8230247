"""The Lambda CPU model's accounting, with an injected clock (no timing, no real signals)."""

from __future__ import annotations

import signal

import pytest

from dsqlkit.bench.throttle import CpuBudget, DutyCycleThrottle, lambda_cpu_share


def test_lambda_cpu_share_is_memory_over_1769_mb() -> None:
    assert lambda_cpu_share(1769) == 1.0
    assert lambda_cpu_share(256) == pytest.approx(0.14471, abs=1e-5)
    assert lambda_cpu_share(128) == pytest.approx(128 / 1769)


@pytest.mark.parametrize("memory", [64, 10_241])
def test_lambda_cpu_share_refuses_sizes_lambda_does_not_have(memory: int) -> None:
    with pytest.raises(ValueError, match="between 128 and 10240 MB"):
        lambda_cpu_share(memory)


def test_budget_stops_a_process_until_its_share_pays_for_what_it_used() -> None:
    budget = CpuBudget(share=0.25, period=0.01, start=0.0)
    # 10 ms of CPU in 10 ms of wall time; 2.5 ms saved up + 2.5 ms earned: 5 ms over, at 0.25/s.
    assert budget.update(now=0.01, cpu=0.01) == pytest.approx(0.02)
    # After the stop nothing more is owed, and a process that used nothing is never stopped.
    assert budget.update(now=0.03, cpu=0.01) == 0.0
    assert budget.update(now=0.04, cpu=0.01) == 0.0
    assert budget.stopped == pytest.approx(0.02)


def test_budget_does_not_save_up_idle_time_beyond_one_period() -> None:
    budget = CpuBudget(share=0.5, period=0.01, start=0.0)
    assert budget.update(now=10.0, cpu=0.0) == 0.0  # ten idle seconds...
    # ...buy at most one period's share (5 ms), like the kernel's CFS quota.
    assert budget.update(now=10.01, cpu=0.01) == pytest.approx((0.01 - 0.005 - 0.005) / 0.5)
    assert budget.update(now=10.02, cpu=0.03) == pytest.approx((0.02 - 0.005) / 0.5)


@pytest.mark.parametrize("share", [0.0, 1.5])
def test_budget_refuses_shares_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ValueError, match="share"):
        CpuBudget(share=share, period=0.01, start=0.0)


class _SimulatedProcess:
    """A CPU-bound process on a simulated clock: it burns CPU whenever it is not stopped."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cpu = 0.0
        self.running = True
        self.signals: list[int] = []

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        if self.running:
            self.cpu += seconds

    def send(self, pid: int, signum: int) -> None:
        assert pid == 4242
        self.signals.append(signum)
        self.running = signum == signal.SIGCONT


@pytest.mark.parametrize("memory", [128, 256, 512, 1024])
def test_throttle_holds_a_cpu_bound_process_to_its_share(memory: int) -> None:
    share = lambda_cpu_share(memory)
    process = _SimulatedProcess()
    throttle = DutyCycleThrottle(
        4242, share, period=0.01, clock=lambda: process.now, sleep=process.sleep, send=process.send
    )
    while process.now < 30.0:
        throttle.tick(process.cpu)
    assert process.cpu / process.now == pytest.approx(share, rel=0.02)
    assert throttle.budget.achieved_share() == pytest.approx(share, rel=0.02)
    assert process.running  # never left stopped
    stops = process.signals[::2]
    assert stops and set(stops) == {signal.SIGSTOP}
    assert set(process.signals[1::2]) == {signal.SIGCONT}


def test_throttle_leaves_a_full_cpu_alone() -> None:
    process = _SimulatedProcess()
    throttle = DutyCycleThrottle(4242, lambda_cpu_share(1769), send=process.send)
    with throttle:
        pass
    assert not throttle.active and process.signals == []
