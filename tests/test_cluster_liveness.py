"""Node heartbeat scheduling: kubelet periods, spread over time, one timer, robust to stalls and errors."""

from __future__ import annotations

from collections import Counter

import pytest
from twisted.internet import task

from scaleagent.cluster.liveness import Beat, HeartbeatScheduler, phase


class Recorder:
    def __init__(self, clock: task.Clock, name: str = "c") -> None:
        self.clock = clock
        self.name = name
        self.calls: list[tuple[float, str, Beat]] = []

    def __call__(self, node: str, beat: Beat) -> None:
        self.calls.append((self.clock.seconds(), node, beat))

    def times(self, node: str, beat: Beat) -> list[float]:
        return [t for t, n, b in self.calls if n == node and b is beat]


def run(clock: task.Clock, until: float, step: float = 0.25) -> None:
    """Advance `clock` to `until` in small steps, as a reactor would (bounded loop)."""
    for _ in range(int((until - clock.seconds()) / step) + 1):
        if clock.seconds() >= until:
            break
        clock.advance(min(step, until - clock.seconds()))


def test_lease_every_10s_and_status_every_5min_per_node():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock)
    rec = Recorder(clock)
    scheduler.add(3, ["n0", "n1"], rec)
    run(clock, 650)
    for node in ("n0", "n1"):
        leases = rec.times(node, Beat.LEASE)
        assert len(leases) in (64, 65, 66)
        gaps = {round(b - a, 3) for a, b in zip(leases, leases[1:])}
        assert gaps == {10.0}
        statuses = rec.times(node, Beat.STATUS)
        assert len(statuses) == 2 or len(statuses) == 3
        assert {round(b - a, 3) for a, b in zip(statuses, statuses[1:])} == {300.0}
    # the two nodes of a cluster do not beat together
    assert rec.times("n0", Beat.LEASE)[0] != rec.times("n1", Beat.LEASE)[0]


def test_beats_never_fire_early_and_at_most_one_resolution_late():
    clock = task.Clock()
    clock.advance(1234.567)
    scheduler = HeartbeatScheduler(clock, lease_period=10, status_period=0, resolution=0.5)
    rec = Recorder(clock)
    scheduler.add(42, ["a"], rec)
    run(clock, 1300, step=0.05)
    expected_phase = phase(42, 0, Beat.LEASE) * 10
    for when in rec.times("a", Beat.LEASE):
        lateness = (when - expected_phase) % 10
        assert lateness < 0.5 + 1e-6


def test_phase_is_aligned_to_the_clock_not_to_the_start():
    """Clusters registered at different moments keep their own fixed phase (restart-stable)."""
    offset = phase(9, 0, Beat.LEASE) * 10
    for start in (0.0, 3.7, 12345.6):
        clock = task.Clock()
        clock.advance(start)
        rec = Recorder(clock)
        HeartbeatScheduler(clock, status_period=0, resolution=0.1).add(9, ["x"], rec)
        run(clock, start + 40, step=0.1)
        times = rec.times("x", Beat.LEASE)
        assert len(times) == 4
        assert all((t - offset) % 10 < 0.2 + 1e-6 for t in times)  # resolution + the test's step


def test_ten_thousand_clusters_are_spread_evenly():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock, status_period=0, resolution=0.5)
    counts: Counter[int] = Counter()

    def beat(node: str, kind: Beat) -> None:
        counts[int(clock.seconds() * 2)] += 1

    for index in range(1, 10_001):  # (cluster 0's node 0 has phase 0: due right now)
        scheduler.add(index, [f"n{k}" for k in range(3)], beat)
    run(clock, 10, step=0.5)
    per_bucket = [counts[b] for b in range(1, 21)]  # (0, 10]: every entry exactly once
    assert sum(per_bucket) == 30_000
    assert min(per_bucket) > 0.9 * 1500 and max(per_bucket) < 1.1 * 1500


def test_one_timer_for_the_whole_process():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock)
    for index in range(200):
        scheduler.add(index, ["a", "b", "c"], lambda node, beat: None)
    assert len(clock.getDelayedCalls()) == 1
    run(clock, 30)
    assert len(clock.getDelayedCalls()) == 1
    assert scheduler.beats >= 200 * 3 * 2


def test_cancel_stops_beats_and_releases_entries():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock)
    rec = Recorder(clock)
    registration = scheduler.add(1, ["a"], rec)
    run(clock, 25)
    seen = len(rec.calls)
    registration.cancel()
    registration.cancel()  # idempotent
    assert scheduler.registrations == 0
    run(clock, 400)
    assert len(rec.calls) == seen
    assert scheduler.pending == 0
    assert clock.getDelayedCalls() == []  # nothing scheduled: no timer either


def test_cancel_from_inside_the_callback():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock, status_period=0)
    calls = []

    def once(node: str, beat: Beat) -> None:
        calls.append(node)
        registration.cancel()

    registration = scheduler.add(1, ["a", "b"], once)
    run(clock, 50)
    assert len(calls) == 1


def test_zero_turns_a_beat_off():
    clock = task.Clock()
    rec = Recorder(clock)
    HeartbeatScheduler(clock, lease_period=0, status_period=60).add(1, ["a"], rec)
    run(clock, 200)
    assert {b for _, _, b in rec.calls} == {Beat.STATUS}
    clock2 = task.Clock()
    off = HeartbeatScheduler(clock2, lease_period=0, status_period=0)
    off.add(1, ["a"], rec)
    assert clock2.getDelayedCalls() == [] and off.pending == 0


def test_a_failing_callback_is_logged_and_others_keep_beating():
    from twisted.logger import globalLogPublisher

    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock, status_period=0)
    good = Recorder(clock)
    events = []
    globalLogPublisher.addObserver(events.append)
    try:

        def bad(node: str, beat: Beat) -> None:
            raise RuntimeError("store exploded")

        scheduler.add(1, ["bad"], bad)
        scheduler.add(2, ["good"], good)
        run(clock, 35)
    finally:
        globalLogPublisher.removeObserver(events.append)
    assert len(good.calls) >= 3
    assert scheduler.errors >= 3
    assert any(e.get("log_failure") is not None and e.get("node") == "bad" for e in events)


def test_a_stall_fires_each_entry_once_and_resumes_on_phase():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock, status_period=0, resolution=0.5)
    rec = Recorder(clock)
    scheduler.add(5, ["a"], rec)
    run(clock, 20)
    before = len(rec.calls)
    clock.advance(95)  # the reactor was blocked for 95 s
    assert len(rec.calls) == before + 1
    run(clock, 200)
    times = rec.times("a", Beat.LEASE)
    offset = phase(5, 0, Beat.LEASE) * 10
    assert all((t - offset) % 10 < 0.5 + 1e-6 for t in times[before + 1 :])


def test_bad_settings_are_clear_errors():
    clock = task.Clock()
    with pytest.raises(ValueError, match="lease_period -1"):
        HeartbeatScheduler(clock, lease_period=-1)
    with pytest.raises(ValueError, match="resolution 0"):
        HeartbeatScheduler(clock, resolution=0)
    with pytest.raises(ValueError, match="at least the resolution"):
        HeartbeatScheduler(clock, lease_period=0.1, resolution=0.5)


def test_stop_cancels_everything():
    clock = task.Clock()
    scheduler = HeartbeatScheduler(clock)
    rec = Recorder(clock)
    scheduler.add(1, ["a"], rec)
    scheduler.stop()
    assert clock.getDelayedCalls() == []
    run(clock, 100)
    assert rec.calls == []


def test_phases_are_in_range_and_distinct():
    values = {round(phase(i, n, Beat.LEASE), 9) for i in range(100) for n in range(3)}
    assert len(values) == 300
    assert all(0 <= v < 1 for v in values)
    assert phase(1, 0, Beat.LEASE) != phase(1, 0, Beat.STATUS)


def test_renew_lease_and_heartbeat_node_copy_on_write():
    from scaleagent.cluster import liveness
    from scaleagent.cluster.template import ClusterTemplate, SeedBuilder

    seed = SeedBuilder(ClusterTemplate.default(), ca_pem="pem").seed(4, "c4")
    node = next(o for o in seed.own if o["kind"] == "Node")
    lease = next(o for o in seed.own if o["kind"] == "Lease")
    frozen = repr((node, lease))
    now = 1_790_000_000.25
    renewed = liveness.renew_lease(lease, now)
    assert renewed["spec"]["renewTime"] == "2026-09-21T14:13:20.250000Z"
    assert renewed["spec"]["holderIdentity"] == lease["spec"]["holderIdentity"]
    assert renewed["metadata"] is lease["metadata"]
    beat = liveness.heartbeat_node(node, now)
    assert {c["lastHeartbeatTime"] for c in beat["status"]["conditions"]} == {"2026-09-21T14:13:20Z"}
    assert [c["lastTransitionTime"] for c in beat["status"]["conditions"]] == [
        c["lastTransitionTime"] for c in node["status"]["conditions"]
    ]
    assert beat["status"]["capacity"] is node["status"]["capacity"]
    assert repr((node, lease)) == frozen  # the (shared) seed objects are untouched
    assert liveness.micro_time(0.9999999) == "1970-01-01T00:00:01.000000Z"
