"""Rancher's cluster list is read less often as the fleet grows (a real agent fleet never reads it)."""

from __future__ import annotations

import scaleagent.agent as agent_module
from tests.test_agent_reconnect_limit import fully_connected, make_agent, run_until


def test_the_list_poll_is_paced_by_the_number_of_clusters(tmp_path, monkeypatch):
    monkeypatch.setattr(agent_module, "POLL_SECONDS_PER_CLUSTER", 0.2)  # 300 clusters: every 60 s
    clock, rancher, world, agent = make_agent(tmp_path, 300, 100)
    calls = []
    listed = rancher.list_clusters

    async def counting(prefix=""):
        calls.append(clock.seconds())
        return await listed(prefix)

    rancher.list_clusters = counting
    agent.startService()
    try:
        run_until(clock, lambda: fully_connected(agent, 300), 120)
        calls.clear()
        start = clock.seconds()
        while clock.seconds() < start + 300:
            clock.advance(1)
        assert 4 <= len(calls) <= 6  # every 60 s, not every 15 s (20 polls)
        assert all(b - a >= 60 for a, b in zip(calls, calls[1:]))
        assert {runner.rancher_state for runner in agent.runners.values()} == {"active"}
    finally:
        agent.stopService()
        clock.advance(60)
