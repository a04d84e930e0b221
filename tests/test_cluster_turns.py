"""TurnBatcher: the in-tunnel TLS connections' zero-delay flushes share one reactor call per turn."""

import pytest
from twisted.internet.error import AlreadyCalled, AlreadyCancelled
from twisted.internet.task import Clock

from scaleagent.cluster.turns import TurnBatcher


def test_zero_delay_calls_share_one_reactor_call_and_run_in_order():
    clock = Clock()
    turns = TurnBatcher(clock)
    ran = []
    handles = [turns.callLater(0, ran.append, i) for i in range(100)]
    assert len(clock.getDelayedCalls()) == 1 and ran == []
    assert all(h.active() for h in handles)
    clock.advance(0)
    assert ran == list(range(100)) and not any(h.active() for h in handles)
    assert clock.getDelayedCalls() == []
    turns.callLater(0, ran.append, "next")  # a new turn schedules again
    assert len(clock.getDelayedCalls()) == 1
    clock.advance(0)
    assert ran[-1] == "next"


def test_cancel_before_the_turn_and_errors_after():
    clock = Clock()
    turns = TurnBatcher(clock)
    ran = []
    kept = turns.callLater(0, ran.append, "kept")
    dropped = turns.callLater(0, ran.append, "dropped")
    dropped.cancel()
    with pytest.raises(AlreadyCancelled):
        dropped.cancel()
    clock.advance(0)
    assert ran == ["kept"]
    with pytest.raises(AlreadyCalled):
        kept.cancel()


def test_other_delays_go_to_the_real_clock_and_a_failure_does_not_strand_the_rest():
    clock = Clock()
    turns = TurnBatcher(clock)
    ran = []
    later = turns.callLater(5, ran.append, "later")
    assert later in clock.getDelayedCalls() and turns.seconds() == clock.seconds()

    def boom():
        raise RuntimeError("boom")

    turns.callLater(0, boom)
    turns.callLater(0, ran.append, "after boom")
    clock.advance(0)
    assert ran == ["after boom"]
    clock.advance(5)
    assert ran == ["after boom", "later"]
