"""Reconnect timing with task.Clock: the slot limiter, the stateful backoff, and 1,000 real
ClientServices whose server vanished."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from twisted.application.internet import ClientService
from twisted.internet import defer, task
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import StringTransport

from scaleagent.retry import REAL_AGENT, Backoff, SlotLimiter


def test_limiter_spaces_slots_and_never_delays_earlier_wishes():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 10)
    assert [limiter.reserve(0.0) for _ in range(3)] == [0.0, 0.1, 0.2]
    # Somebody wanting t=60 does not push back somebody wanting t=1.
    assert limiter.reserve(60.0) == 60.0
    assert limiter.reserve(1.0) == 1.0
    assert limiter.reserve(60.0) == pytest.approx(60.1)
    assert limiter.delay(0.0) == pytest.approx(0.3)
    with pytest.raises(ValueError):
        SlotLimiter(clock, 0)


def test_limiter_prunes_the_past():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 100)
    for _ in range(5000):
        limiter.reserve(clock.seconds())
        clock.advance(0.05)
    assert limiter.tracked < 3000  # bounded, not one entry per reservation ever made


def test_backoff_grows_to_its_cap_and_resets_after_a_stable_connection():
    clock = task.Clock()
    backoff = Backoff(clock, initial=1.0, factor=2.0, cap=60.0, jitter=0.5, rng=random.Random(1))
    bases = []
    for _ in range(10):
        bases.append(backoff.base_delay(backoff.failures))
        delay = backoff()
        assert bases[-1] * 0.5 <= delay <= bases[-1]
    assert bases == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    # A connection that opens but dies within stable_after still counts as a failure (handshake refused
    # after TCP worked is the case ClientService gets wrong).
    backoff.opened()
    clock.advance(5)
    assert backoff() >= 30
    # One that lived long enough starts afresh.
    backoff.opened()
    clock.advance(31)
    assert backoff() <= 1.0
    assert backoff.failures == 1


def test_real_agent_mode_is_five_plus_five_without_jitter_or_limit():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 1)
    backoff = Backoff(clock, mode=REAL_AGENT, limiter=limiter)
    assert [backoff() for _ in range(5)] == [10.0] * 5
    assert limiter.reserved == 0
    with pytest.raises(ValueError):
        Backoff(clock, mode="sometimes")


class Vanishing:
    """An endpoint whose server is up until `vanish()`; records every connection attempt's time."""

    def __init__(self, clock, world):
        self.clock = clock
        self.world = world
        self.attempts: list[float] = []
        self.protocol = None

    def connect(self, factory):
        self.attempts.append(self.clock.seconds())
        if self.world["down"]:
            return defer.fail(ConnectionRefusedError())
        protocol = factory.buildProtocol(None)
        protocol.makeConnection(StringTransport())
        self.protocol = protocol
        return defer.succeed(protocol)


class Tunnel(Protocol):
    def connectionMade(self):
        self.factory.backoff.opened()


def test_a_thousand_clusters_whose_server_vanished_reconnect_spread_and_capped():
    clock = task.Clock()
    rate = 50
    limiter = SlotLimiter(clock, rate)
    rng = random.Random(7)
    world = {"down": False}
    services, endpoints, backoffs = [], [], []
    for _ in range(1000):
        backoff = Backoff(clock, limiter=limiter, cap=60.0, rng=rng)
        factory = Factory.forProtocol(Tunnel)
        factory.backoff = backoff
        endpoint = Vanishing(clock, world)
        service = ClientService(endpoint, factory, retryPolicy=backoff, clock=clock)
        service.startService()
        services.append(service)
        endpoints.append(endpoint)
        backoffs.append(backoff)
    assert all(len(e.attempts) == 1 for e in endpoints)
    clock.advance(100)  # all stable

    world["down"] = True
    start = clock.seconds()
    for endpoint in endpoints:
        endpoint.protocol.transport.loseConnection()
        endpoint.protocol.connectionLost(ConnectionRefusedError())
    for _ in range(6000):  # ten minutes in 0.1 s steps
        clock.advance(0.1)

    attempts = sorted(t for e in endpoints for t in e.attempts[1:])
    assert len(attempts) > 5000  # they kept trying
    per_second = Counter(int((t - start) // 1) for t in attempts)
    assert max(per_second.values()) <= rate
    # The first reconnect of each cluster is spread over at least 1000/rate seconds, not a burst.
    firsts = sorted(e.attempts[1] for e in endpoints)
    assert firsts[-1] - firsts[0] >= 1000 / rate - 1
    # Each cluster's delays grow to their cap: late gaps are at least cap * (1 - jitter).
    for endpoint in endpoints[:50]:
        gaps = [b - a for a, b in zip(endpoint.attempts[1:], endpoint.attempts[2:])]
        assert gaps[0] < 5 or gaps[0] < gaps[-1]
        assert gaps[-1] >= 30.0
    assert all(b.base_delay(b.failures) == 60.0 for b in backoffs)

    # The server comes back: everyone is connected again within a bounded time, still capped.
    world["down"] = False
    back = clock.seconds()
    for _ in range(1500):
        clock.advance(0.1)
    assert all(e.attempts[-1] >= back for e in endpoints)
    recent = [t for e in endpoints for t in e.attempts if t >= back]
    assert max(Counter(int(t // 1) for t in recent).values()) <= rate
    for service in services:
        service.stopService()


def test_admission_counts_real_attempt_times_in_every_window():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 3)
    assert limiter.free_at() == 0.0
    assert [limiter.admit() for _ in range(4)] == [True, True, True, False]  # a late burst: 3 go
    assert limiter.free_at() == 1.0 and limiter.refused == 1
    clock.advance(0.5)
    assert not limiter.admit()
    clock.advance(0.5)  # the window (0, 1] no longer holds the three made at 0
    assert limiter.admit() and limiter.admit() and limiter.admit() and not limiter.admit()
    assert limiter.free_at() == 2.0 and limiter.admitted == 6
    assert limiter.peak == 3  # the most admitted in one window, as measured at each admission
    # Below one attempt a second: one per 1/rate seconds.
    slow = SlotLimiter(clock, 0.5)
    assert slow.admit() and not slow.admit()
    clock.advance(1.999)
    assert not slow.admit()
    clock.advance(0.001)
    assert slow.admit()


def test_fractional_rate_never_gives_more_than_its_floor_in_a_second():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 2.5)
    admitted = []
    for _ in range(400):  # 0.05 s steps, someone asks at every one
        if limiter.admit():
            admitted.append(round(clock.seconds() * 20))
        clock.advance(0.05)
    per_window = [sum(1 for a in admitted if end - 20 < a <= end) for end in range(400)]
    assert max(per_window) == 2 and len(admitted) >= 2 * 19


def test_the_window_peak_counts_only_attempts_inside_one_window():
    clock = task.Clock()
    limiter = SlotLimiter(clock, 10)
    for _ in range(4):
        assert limiter.admit()
        clock.advance(0.4)  # at most three of these fall in any 1 s window
    assert limiter.peak == 3
    for _ in range(10):
        limiter.admit()
    assert limiter.peak == 10 and limiter.refused == 2  # 0.8 and 1.2 still count at 1.6: 8 more fit
