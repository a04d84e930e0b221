"""Two shards side by side (`--shard 0/2` and `--shard 1/2`, through `load_config` as the plugin does)
against one stand-in: disjoint clusters that together are exactly the configured set.

Each shard has its own state directory, hence its own CA: the caCert in the tunnel params Rancher
received tells which process serves each cluster.
"""

from __future__ import annotations

import functools

import pytest
import pytest_twisted
from twisted.internet import defer

from scaleagent.agent import AgentService
from scaleagent.config import TOKEN_ENV, load_config
from scaleagent.sim import store as st
from scaleagent.sim.service import start_ranchersim
from tests.support import until as support_until

COUNT = 7  # odd: the shards are uneven (4 and 3)


#: the shared bounded poll (tests/support.py), with this file's patience
until = functools.partial(support_until, seconds=30.0, step=0.05)


@pytest.fixture
def sim(reactor):
    started = pytest_twisted.blockon(defer.ensureDeferred(start_ranchersim(reactor, summary_interval=0)))
    yield started
    pytest_twisted.blockon(defer.ensureDeferred(started.stop()))


def shard_config(sim, tmp_path, shard: str):
    directory = tmp_path / shard.replace("/", "-of-")
    directory.mkdir()
    ini = directory / "agent.ini"
    ini.write_text(
        f"[rancher]\nurl = {sim.url}\nca_checksum = {sim.ca_checksum}\n"
        f"[clusters]\ncount = {COUNT}\nname_prefix = shard-\nshard = 0/1\nramp_per_second = 200\n"
        "reconnect_per_second = 200\n"
        "[state]\ndir = state\n"
    )
    return load_config(ini, environ={TOKEN_ENV: sim.api_token}, shard_override=shard)


@pytest_twisted.ensureDeferred
async def test_two_shards_serve_disjoint_clusters_that_make_up_the_whole_set(reactor, sim, tmp_path):
    agents = []
    for shard in ("0/2", "1/2"):
        config = shard_config(sim, tmp_path, shard)
        assert str(config.clusters.shard) == shard  # --shard overrides the file's 0/1
        agent = AgentService(config, reactor, raise_limit=False, poll_interval=0.3, progress_interval=0.5)
        agents.append(agent)
    try:
        for agent in agents:
            agent.startService()

        def all_up():
            clusters = sim.store.clusters()
            return len(clusters) == COUNT and all(
                c.state == st.ACTIVE and c.sessions == {"main": 1, "steve": 1} for c in clusters
            )

        await until(reactor, all_up, what=f"{COUNT} clusters, each with exactly one pair of tunnels")
        first, second = ({r.name for r in a.runners.values()} for a in agents)
        assert first == {f"shard-{i:05d}" for i in (0, 2, 4, 6)}
        assert second == {f"shard-{i:05d}" for i in (1, 3, 5)}
        assert not first & second
        expected = {f"shard-{i:05d}" for i in range(COUNT)}
        assert first | second == expected == {c.name for c in sim.store.clusters()}
        assert [a.counts()["owned"] for a in agents] == [4, 3]
        # Which process Rancher sees behind each cluster: the CA of that shard's state directory.
        cas = [a.clusters.pki.ca_cert_b64 for a in agents]
        assert cas[0] != cas[1]
        for cluster in sim.store.clusters():
            index = int(cluster.name.rsplit("-", 1)[1])
            assert cluster.params.ca_cert == cas[index % 2], cluster.name
        # Rancher's view through each shard: only its own clusters, all active.
        await until(reactor, lambda: [a.counts()["rancher_state"] for a in agents]
                    == [{"active": 4}, {"active": 3}], what="each shard polled its own clusters")
    finally:
        for agent in agents:
            if agent.running:
                await agent.stopService()
