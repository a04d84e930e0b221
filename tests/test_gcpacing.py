"""GcPacer: freezes on its period, runs full collections when due or after churn, hands back on stop."""

from __future__ import annotations

import gc

from twisted.internet.task import Clock

from scaleagent.gcpacing import GcPacer


class FakeCollector:
    """Records calls; each freeze adds `survivors` objects to the frozen population."""

    def __init__(self, survivors: int = 0) -> None:
        self.calls: list[str] = []
        self.frozen = 0
        self.survivors = survivors

    def freeze(self) -> None:
        self.calls.append("freeze")
        self.frozen = max(self.frozen, 100) + self.survivors

    def unfreeze(self) -> None:
        self.calls.append("unfreeze")
        self.frozen = 0

    def collect(self) -> int:
        self.calls.append("collect")
        return 7

    def get_freeze_count(self) -> int:
        return self.frozen


PERIOD = ["collect", "freeze"]  # garbage collected first (cheap: frozen objects are skipped), then frozen
FULL = ["unfreeze", "collect", "freeze"]


def pacer(survivors: int = 0, **kwargs):
    clock = Clock()
    collector = FakeCollector(survivors)
    ticks = iter(range(0, 10_000, 2))
    p = GcPacer(clock, collector=collector, timer=lambda: float(next(ticks)), **kwargs)
    return clock, collector, p


def test_freezes_every_period_and_collects_fully_only_when_due():
    clock, collector, p = pacer(freeze_every=60, full_every=600)
    p.startService()
    assert collector.calls == []
    clock.advance(60)
    assert collector.calls == PERIOD and p.frozen == 100
    for _ in range(8):
        clock.advance(60)
    assert collector.calls == PERIOD * 9  # 540 s: no full pass yet
    clock.advance(60)  # 600 s
    assert collector.calls[18:] == FULL
    assert p.full_collections == 1 and p.last_full_seconds == 2.0
    clock.advance(60)
    assert collector.calls[-2:] == PERIOD and p.full_collections == 1  # the next one 600 s later


def test_growth_of_the_frozen_population_brings_the_full_collection_forward():
    clock, collector, p = pacer(survivors=10, freeze_every=60, full_every=3600, growth=0.25)
    p.startService()
    clock.advance(60)  # frozen 110: the base
    for _ in range(2):
        clock.advance(60)  # 120, 130: +20 of 110, under a quarter
    assert p.full_collections == 0
    clock.advance(60)  # 140: +30 > 27.5
    clock.advance(60)
    assert p.full_collections == 1


def test_churn_brings_the_full_collection_forward():
    churn = [0]
    clock, collector, p = pacer(freeze_every=60, full_every=3600, churn=lambda: churn[0], churn_limit=1000)
    p.startService()
    churn[0] = 999
    clock.advance(60)
    assert p.full_collections == 0
    churn[0] = 1000
    clock.advance(60)
    assert p.full_collections == 1
    churn[0] = 1500  # counted from the last full pass
    clock.advance(60)
    assert p.full_collections == 1


def test_stopping_unfreezes_and_ends_the_loop():
    clock, collector, p = pacer(freeze_every=60)
    p.startService()
    clock.advance(60)
    p.stopService()
    assert collector.calls == [*PERIOD, "unfreeze"] and p.frozen == 0
    clock.advance(600)
    assert collector.calls == [*PERIOD, "unfreeze"]


def test_a_failing_period_is_logged_and_the_loop_goes_on():
    clock, collector, p = pacer(freeze_every=60)
    boom = [True]

    def freeze() -> None:
        if boom.pop() if boom else False:
            raise RuntimeError("freeze failed")
        collector.calls.append("freeze")

    collector.freeze = freeze
    p.startService()
    clock.advance(60)
    clock.advance(60)
    assert collector.calls == ["collect", "collect", "freeze"] and p.freezes == 1
    p.stopService()


def test_with_the_real_collector_survivors_leave_the_collectors_walk_until_stop():
    clock = Clock()
    p = GcPacer(clock, freeze_every=1, full_every=10_000)
    kept = [[i] for i in range(10_000)]
    p.startService()
    try:
        clock.advance(1)
        assert gc.get_freeze_count() >= len(kept)
        assert p.collect_fully() >= 0.0 and gc.get_freeze_count() == 0  # a full pass takes them back
        clock.advance(1)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        p.stopService()
    assert gc.get_freeze_count() == 0
