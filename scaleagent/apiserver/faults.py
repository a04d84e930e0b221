"""Fault switches of one simulated apiserver: readiness failing, added latency, each for a while.

A `Faults` lives in `ApiContext.extras[FAULTS]`; the resource tree consults it per request (no entry =
healthy and fast). Expiry is by the clock, so nothing has to switch a fault off. Who turns faults on
(the churn engine, tests) is not this layer's business.
"""

from __future__ import annotations

from typing import Any

FAULTS = "faults"
#: the readiness checks reported failing while unready (a real apiserver whose etcd is gone)
FAILING_CHECKS = ("etcd", "etcd-readiness")


class Faults:
    """Per-cluster fault state; times are the clock's seconds."""

    __slots__ = ("clock", "unready_until", "slow_until", "delay")

    def __init__(self, clock: Any) -> None:
        self.clock = clock
        self.unready_until = 0.0
        self.slow_until = 0.0
        self.delay = 0.0

    def make_unready(self, seconds: float) -> None:
        self.unready_until = max(self.unready_until, self.clock.seconds() + seconds)

    def make_slow(self, seconds: float, delay: float) -> None:
        self.slow_until = max(self.slow_until, self.clock.seconds() + seconds)
        self.delay = delay

    def clear(self) -> None:
        self.unready_until = self.slow_until = self.delay = 0.0

    @property
    def unready(self) -> bool:
        return self.clock.seconds() < self.unready_until

    @property
    def latency(self) -> float:
        """Seconds to hold each request back (0 when not slow)."""
        return self.delay if self.clock.seconds() < self.slow_until else 0.0


def faults_of(api: Any, create: bool = False) -> Faults | None:
    """The `Faults` of an `ApiContext` (made on first use when `create`)."""
    faults = api.extras.get(FAULTS)
    if faults is None and create:
        faults = api.extras[FAULTS] = Faults(api.clock)
    return faults


def failing_health(endpoint: str, checks: tuple[str, ...], check: str | None) -> bytes:
    """The 500 body of a failing `/readyz[/<check>]`, worded as kube-apiserver words it."""
    if check:
        return f"internal server error: {check} failed: reason withheld\n".encode()
    lines = [
        f"[-]{name} failed: reason withheld" if name in FAILING_CHECKS else f"[+]{name} ok" for name in checks
    ]
    lines.append(f"{endpoint} check failed")
    return ("\n".join(lines) + "\n").encode()


__all__ = ["FAILING_CHECKS", "FAULTS", "Faults", "failing_health", "faults_of"]
